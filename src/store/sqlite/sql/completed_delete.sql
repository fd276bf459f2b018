-- Removes the oldest completed jobs, at most ?2 (-1: all), and returns
-- their ids (their log lines go next, by id): those that finished before
-- ?1, or all when ?3 (no cut-off: then a job stored without a finish time
-- counts from its creation). What retention asks for, along
-- `kessel_jobs_by_status_finished` (whose WHERE clause is repeated word
-- for word): a batch reads the index entries it removes, not every
-- completed job. Oldest first, as `jobs_delete.sql`.
DELETE FROM kessel_jobs WHERE rowid IN (
    SELECT rowid FROM kessel_jobs
    WHERE status = 'completed'
      AND status IN ('completed', 'buried', 'expired', 'cancelled')
      AND COALESCE(finished_at, created_at) < ?1
      AND (?3 OR finished_at < ?1)
    ORDER BY COALESCE(finished_at, created_at), id
    LIMIT ?2
)
RETURNING id
