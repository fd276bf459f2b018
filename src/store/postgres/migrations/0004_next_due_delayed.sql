-- kessel schema version 4: no next-due index entry for a job due when it
-- is created.
-- `{schema}` is replaced by the store's schema name.

-- The next-due lookup says when to claim again after a claim that took
-- every job due: it matters only for jobs that come due later. A job due
-- when created (no delay, the common case) is announced by the wake-up its
-- insert sends and taken by the claim that follows, so its entry here was
-- never read. Leaving it out saves one index entry of three for every such
-- job inserted, and one removal when it is claimed. Retried, released and
-- kicked jobs are due after they were created, so they stay in.
DROP INDEX {schema}.jobs_next_due;
CREATE INDEX jobs_next_due ON {schema}.jobs (task, run_at)
    WHERE leased_by IS NULL AND lease_until IS NULL AND run_at > created_at
      AND status IN ('scheduled', 'ready', 'retrying');
