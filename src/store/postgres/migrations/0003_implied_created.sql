-- kessel schema version 3: fewer rows and index entries written per job.
-- `{schema}` is replaced by the store's schema name.

-- A job's log starts with a "created" line (attempt 0, at its creation
-- time). As a row of job_logs it cost a heap tuple, a primary-key entry
-- and a sequence value per job; now this flag says the line is there, and
-- reading the job puts it back first, from created_at. Jobs stored before
-- keep their line as a row (false). Adding a column with a constant
-- default rewrites nothing.
ALTER TABLE {schema}.jobs ADD COLUMN log_created boolean NOT NULL DEFAULT false;

-- Counts by task and status read every row either way (a queue's rows are
-- rarely all-visible, so this index gave no index-only scans), and task
-- filters are checked along jobs_created. Kept up to date, it was one more
-- index entry for every insert and every state change.
DROP INDEX {schema}.jobs_task_status;

-- Listing by creation time reads the unleased jobs in this index's order
-- and merges the few leased ones (found through jobs_leased) in. Leaving
-- leased jobs out saves an index entry on every claim.
DROP INDEX {schema}.jobs_created;
CREATE INDEX jobs_created ON {schema}.jobs (created_at, id) WHERE leased_by IS NULL;
