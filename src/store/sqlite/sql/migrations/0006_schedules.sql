-- kessel's SQLite schema, version 6: the schedules of recurring jobs.
--
-- One row per schedule, by name. `spec` is kessel's JSON text for the
-- schedule's timing (cron or interval, time zone, missed-ticks policy),
-- compared but never parsed here. `next_run` is the tick a schedule waits
-- for: moving it on and inserting that tick's job happen in one
-- transaction (`schedule_advance.sql` and the job's insert), so a tick
-- has its job or is still due, never both or neither. Times are integer
-- microseconds since the Unix epoch, as in `kessel_jobs`.
CREATE TABLE kessel_schedules (
    name     TEXT PRIMARY KEY NOT NULL,
    task     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    spec     TEXT NOT NULL,
    paused   INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    next_run INTEGER NOT NULL,
    last_run INTEGER,
    last_job TEXT
) STRICT, WITHOUT ROWID;
