-- kessel's SQLite schema, version 9: a job's fair group.
--
-- The group key a job was created with (`NewJob::group`): within one
-- priority the groups of a tag take turns. Set once, at insert; NULL for
-- a job in no group (every job stored before). The store of one process
-- hands every pending job to the scheduler, which orders them itself, so
-- no index is needed.
ALTER TABLE kessel_jobs ADD COLUMN group_key TEXT;
