SELECT job_id, at, attempt, message, data FROM kessel_job_logs
WHERE job_id IN (SELECT value FROM json_each(?1))
ORDER BY seq
