-- kessel's SQLite schema, version 2: fewer B-trees written per new job.
--
-- A job's log starts with a "created" line (attempt 0, at its creation
-- time). Stored as a row it cost two B-tree inserts per job (the line and
-- its index entry); now a flag on the job says the line is there, and
-- reading the job puts it back first, from `created_at`. Jobs stored before
-- keep their line as a row (flag 0).
ALTER TABLE kessel_jobs ADD COLUMN log_created INTEGER NOT NULL DEFAULT 0
    CHECK (log_created IN (0, 1));

-- Stats (GROUP BY task, status) read every job either way, and a scan of
-- the table does that as well as a scan of this index did; task filters
-- are checked row by row along `kessel_jobs_by_created`. Kept up to date,
-- it was one more B-tree written per job and per state change.
DROP INDEX kessel_jobs_by_task_status;
