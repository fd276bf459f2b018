-- kessel schema version 12: autovacuum settings for the job tables.
-- `{schema}` is replaced by the store's schema name.
--
-- Every state change of a job (claimed, started, finished) leaves a dead
-- row version in `jobs`, and removing finished jobs leaves dead rows in
-- both tables. With the server's defaults autovacuum waits for a fifth of
-- the table to be dead (on a table that keeps 100,000 completed jobs,
-- 20,000 dead rows) and then works through it slowly (cost-limited). A
-- queue's tables are small and churn all the time: vacuum them after a
-- fixed number of dead rows whatever their size, at full speed. Analyze
-- them as often, so the planner's idea of the backlog stays current.
-- A running queue also vacuums them itself between autovacuum's visits
-- (see `PgOptions::vacuum_after`); these settings are what remains when
-- no queue runs or that is switched off.
--
-- No fillfactor: an update leaves room on its page for a HOT update only
-- when no indexed column changes, and every per-job update here changes
-- one (the lease, the status or the finish time).
ALTER TABLE {schema}.jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
ALTER TABLE {schema}.job_logs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
