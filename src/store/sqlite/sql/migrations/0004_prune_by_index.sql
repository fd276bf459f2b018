-- kessel's SQLite schema, version 4: retention prunes along an index, and
-- counting reads an index rather than the table.
--
-- Retention removes the oldest completed jobs, by finish time, in small
-- batches as jobs complete. Finding them read and sorted every completed
-- row (2M rows: a 24 s stall). Keyed by status and finish time, the oldest
-- completed jobs are the first entries of the 'completed' range: a batch
-- reads only what it removes. It answers cleaning by age too, so it
-- replaces the index on finished_at; like that one it holds only final
-- jobs, written once per job.
--
-- Counting jobs by task and status (`jobs_count.sql`, run by every
-- retention pass and by `stats`) read the whole table, payloads and all;
-- keyed by (status, task), the index that loads the pending jobs answers
-- it alone. It replaces the index on status: as many B-trees are written
-- per job and per state change as before.
DROP INDEX kessel_jobs_by_status;
DROP INDEX kessel_jobs_by_finished;
CREATE INDEX kessel_jobs_by_status_task ON kessel_jobs (status, task);
-- Final jobs are removed oldest first by finish time, or creation time
-- for one stored without a finish time (`jobs_delete.sql`); queries name
-- this WHERE clause word for word, so SQLite knows the index applies.
CREATE INDEX kessel_jobs_by_status_finished
    ON kessel_jobs (status, COALESCE(finished_at, created_at))
    WHERE status IN ('completed', 'buried', 'expired', 'cancelled');
