-- Appends log lines, bound as one JSON array of rows, in array order
-- (their seq follows it); lines of jobs the table does not have are
-- skipped.
INSERT INTO kessel_job_logs (job_id, at, attempt, message, data)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4
FROM json_each(?1)
WHERE EXISTS (SELECT 1 FROM kessel_jobs WHERE id = value ->> 0)
