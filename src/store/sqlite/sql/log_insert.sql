INSERT INTO kessel_job_logs (job_id, at, attempt, message, data) VALUES (?1, ?2, ?3, ?4, ?5)
