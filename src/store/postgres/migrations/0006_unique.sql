-- kessel schema version 6: unique jobs.
-- A unique job keeps its key in `unique_key` while it may hold it; its
-- scope (0 waiting, 1 unfinished, 2 window) and, for a window, its end
-- say until when. The index lets no two rows keep one key: a new job
-- first clears the key from a row whose hold has ended, then takes it.
ALTER TABLE {schema}.jobs
    ADD COLUMN unique_key   text,
    ADD COLUMN unique_scope smallint,
    ADD COLUMN unique_until timestamptz;
CREATE UNIQUE INDEX jobs_unique_key ON {schema}.jobs (unique_key) WHERE unique_key IS NOT NULL;
