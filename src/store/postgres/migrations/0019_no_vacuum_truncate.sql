-- kessel schema version 19: vacuums never truncate the job tables.
-- `{schema}` is replaced by the store's schema name.
--
-- When a vacuum finds empty pages at the end of a table it gives them back
-- to the operating system, and for that it takes an ACCESS EXCLUSIVE lock
-- on the table: every claim, create and state change waits until the
-- truncation is done (and on a replica, every query on the table is
-- cancelled or waits). A queue's tables empty their last pages all the
-- time, as jobs finish and are pruned, and refill them moments later, so
-- each vacuum (kessel's own, every second or so under load, and
-- autovacuum's) stopped the queue for a moment: at 200 jobs a second the
-- p99 from create to start went from about 10 ms to 60-120 ms. The pages
-- kept are reused by the next inserts.
ALTER TABLE {schema}.jobs SET (vacuum_truncate = false);
ALTER TABLE {schema}.job_logs SET (vacuum_truncate = false);
