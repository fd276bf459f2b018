SELECT l.job_id, l.at, l.attempt, l.message, l.data
FROM kessel_job_logs AS l JOIN kessel_jobs AS j ON j.id = l.job_id
WHERE j.status IN ('scheduled', 'ready', 'running', 'retrying')
ORDER BY l.seq
