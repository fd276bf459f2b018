-- kessel schema version 14: a job's fair group.
-- `{schema}` is replaced by the store's schema name.
--
-- The group key a job was created with (`NewJob::group`): within one
-- priority the groups take turns. Set once, at insert; NULL for a job in
-- no group (every job stored before).
ALTER TABLE {schema}.jobs ADD COLUMN group_key text;

-- Claims read jobs without a group in order through `jobs_claim`, which
-- now holds only those: a backlog of grouped jobs ahead of them is never
-- read past. A job without a group costs the same index entries as
-- before.
DROP INDEX {schema}.jobs_claim;
CREATE INDEX jobs_claim ON {schema}.jobs (task, priority, run_at, created_at, id)
    WHERE group_key IS NULL AND leased_by IS NULL AND status IN ('scheduled', 'ready', 'retrying');

-- Grouped jobs, by task and group: a claim walks the distinct groups with
-- claimable jobs (a skip scan, one probe per group) and reads each
-- group's best jobs in order. Empty, and so free, while no job has a
-- group.
CREATE INDEX jobs_claim_grouped ON {schema}.jobs (task, group_key, priority, run_at, created_at, id)
    WHERE group_key IS NOT NULL AND leased_by IS NULL AND status IN ('scheduled', 'ready', 'retrying');
