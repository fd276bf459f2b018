-- kessel schema version 13: a job's own webhook callback.
-- `{schema}` is replaced by the store's schema name.
--
-- The URL a job was created with (`NewJob::callback`), POSTed to when it
-- reaches a final state, in place of its task's. Set once, at insert;
-- NULL for a job that names none (every job stored before).
ALTER TABLE {schema}.jobs ADD COLUMN callback text;
