-- Inserts a batch of jobs, bound as one JSON array of rows (see rows.rs):
-- one statement, whatever the batch size.
INSERT INTO kessel_jobs (
    id, reference, task, payload, priority, status, created_at, run_at,
    expires_at, attempts, max_attempts, last_error, result,
    progress_current, progress_total, finished_at
)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
       value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9,
       value ->> 10, value ->> 11, value ->> 12, value ->> 13, value ->> 14,
       value ->> 15
FROM json_each(?1)
