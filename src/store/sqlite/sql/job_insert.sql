INSERT INTO kessel_jobs (
    id, reference, task, payload, priority, status, created_at, run_at,
    expires_at, attempts, max_attempts, last_error, result,
    progress_current, progress_total, finished_at
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
