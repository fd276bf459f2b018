-- Applies a batch of state changes, bound as one JSON array of rows, at
-- most one per job (the last one wins; rows.rs keeps only it). Ids the
-- table does not have (cleaned jobs) match nothing and are skipped.
UPDATE kessel_jobs SET
    status = u.value ->> 1,
    attempts = u.value ->> 2,
    max_attempts = u.value ->> 3,
    run_at = u.value ->> 4,
    last_error = u.value ->> 5,
    result = u.value ->> 6,
    progress_current = u.value ->> 7,
    progress_total = u.value ->> 8,
    finished_at = u.value ->> 9
FROM json_each(?1) AS u
WHERE kessel_jobs.id = u.value ->> 0
