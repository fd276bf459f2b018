-- Removes the log lines of the jobs `jobs_delete.sql` is about to remove
-- (the same selection, run first in the same transaction): the store does
-- not enforce the foreign key, whose check cost a lookup per line written.
DELETE FROM kessel_job_logs WHERE job_id IN (
    SELECT id FROM kessel_jobs
    WHERE status IN (SELECT value FROM json_each(?1))
      AND status IN ('completed', 'buried', 'expired', 'cancelled')
      AND (?2 IS NULL OR task IN (SELECT value FROM json_each(?2)))
      AND (?3 IS NULL OR finished_at < ?3)
    ORDER BY COALESCE(finished_at, created_at), id
    LIMIT ?4
)
