-- kessel's SQLite schema, version 1.
--
-- Times are integer microseconds since the Unix epoch (UTC), so they
-- compare and sort as numbers. Job ids are UUIDs in their canonical text
-- form (UUIDv7: they sort by creation time). JSON is stored as text.

CREATE TABLE kessel_schema (
    version    INTEGER PRIMARY KEY NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT;

CREATE TABLE kessel_jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    reference        TEXT,
    task             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN (
                         'scheduled', 'ready', 'running', 'retrying',
                         'completed', 'buried', 'expired', 'cancelled')),
    created_at       INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    expires_at       INTEGER,
    attempts         INTEGER NOT NULL,
    max_attempts     INTEGER,
    last_error       TEXT,
    result           TEXT,
    progress_current INTEGER,
    progress_total   INTEGER,
    finished_at      INTEGER
) STRICT;

-- Loading pending jobs at start, and counting by status.
CREATE INDEX kessel_jobs_by_status ON kessel_jobs (status);
-- Stats (GROUP BY task, status) and task filters.
CREATE INDEX kessel_jobs_by_task_status ON kessel_jobs (task, status);
-- Listing newest or oldest first.
CREATE INDEX kessel_jobs_by_created ON kessel_jobs (created_at, id);
-- Cleaning by age.
CREATE INDEX kessel_jobs_by_finished ON kessel_jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE kessel_job_logs (
    -- The rowid: lines of one job read back in the order they were written.
    seq     INTEGER PRIMARY KEY,
    job_id  TEXT NOT NULL REFERENCES kessel_jobs (id) ON DELETE CASCADE,
    at      INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL,
    data    TEXT
) STRICT;

CREATE INDEX kessel_job_logs_by_job ON kessel_job_logs (job_id, seq);
