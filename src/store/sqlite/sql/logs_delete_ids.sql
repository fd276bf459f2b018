-- Removes the log lines of the jobs whose ids are bound as a JSON array.
DELETE FROM kessel_job_logs WHERE job_id IN (SELECT value FROM json_each(?1))
