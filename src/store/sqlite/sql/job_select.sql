SELECT id, reference, task, payload, priority, status, created_at, run_at,
       expires_at, attempts, max_attempts, last_error, result,
       progress_current, progress_total, finished_at, log_created, callback,
       group_key, callback_secret
FROM kessel_jobs
