-- kessel schema version 2: claims that read only what they take, and log
-- lines without a per-row foreign-key check.
-- `{schema}` is replaced by the store's schema name.

-- Claims look up each served task's best due jobs in order (priority, due
-- time, creation): an index led by the task, so a claim reads the rows it
-- takes and not the backlog of other tasks, whatever the planner's
-- statistics say.
DROP INDEX {schema}.jobs_claimable;
CREATE INDEX jobs_claim ON {schema}.jobs (task, priority, run_at, created_at, id)
    WHERE leased_by IS NULL AND status IN ('scheduled', 'ready', 'retrying');

-- The next due job of a task. Its predicate also names `lease_until` (null
-- exactly when `leased_by` is), which claims do not: a claim can never be
-- planned on this index and end up sorting the whole backlog.
DROP INDEX {schema}.jobs_next_due;
CREATE INDEX jobs_next_due ON {schema}.jobs (task, run_at)
    WHERE leased_by IS NULL AND lease_until IS NULL AND status IN ('scheduled', 'ready', 'retrying');

-- The foreign key cost a lookup and a row lock on the job for every log
-- line written. Lines are written only for jobs that exist (checked in the
-- same statement), and removing jobs removes their lines explicitly.
ALTER TABLE {schema}.job_logs DROP CONSTRAINT job_logs_job_id_fkey;

-- The rescuer's two kinds of rows, each found through an index of its own
-- rather than a scan of the table: lapsed leases (jobs_leased), and jobs
-- left running by nobody (rare: this index is nearly always empty).
CREATE INDEX jobs_running_unleased ON {schema}.jobs (id)
    WHERE leased_by IS NULL AND status = 'running';

-- Jobs with an expiry nobody holds, for the expirer's sweep.
CREATE INDEX jobs_expiring ON {schema}.jobs (expires_at)
    WHERE expires_at IS NOT NULL AND leased_by IS NULL AND status IN ('scheduled', 'ready', 'retrying');
