SELECT job_id, at, attempt, message, data FROM kessel_job_logs
WHERE job_id = ?1
ORDER BY seq
