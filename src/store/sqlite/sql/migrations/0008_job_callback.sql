-- kessel's SQLite schema, version 8: a job's own webhook callback.
--
-- The URL a job was created with (`NewJob::callback`), POSTed to when it
-- reaches a final state, in place of its task's. Set once, at insert;
-- NULL for a job that names none (every job stored before).
ALTER TABLE kessel_jobs ADD COLUMN callback TEXT;
