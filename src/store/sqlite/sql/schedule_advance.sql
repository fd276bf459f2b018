-- The compare-and-set that enqueues a tick: it applies only while the
-- schedule still waits for the tick the caller read (?2), and is not
-- paused unless ?6 (a job run by hand). The tick's job is inserted in the
-- same transaction, only when this changed a row.
UPDATE kessel_schedules
SET next_run = ?3, last_run = COALESCE(?4, last_run), last_job = COALESCE(?5, last_job)
WHERE name = ?1 AND next_run = ?2 AND (?6 OR paused = 0)
