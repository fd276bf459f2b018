-- kessel schema version 11: which node took a job's latest attempt.
-- `{schema}` is replaced by the store's schema name.
--
-- Set by the claim that leases the job (the node's id, as in `nodes`),
-- in the same UPDATE, and kept when the lease ends, so a finished job
-- still names the process that ran it.
ALTER TABLE {schema}.jobs ADD COLUMN ran_by uuid;
