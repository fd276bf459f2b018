-- kessel's SQLite schema, version 7: suspensions.
--
-- One row per suspended task (`kind` 'task') or tag (`kind` 'tag'), with
-- who suspended it and since when (integer microseconds since the Unix
-- epoch, as in `kessel_jobs`). A queue opened on the file reads them
-- before it takes in a job, so it starts suspended.
CREATE TABLE kessel_suspensions (
    kind         TEXT NOT NULL CHECK (kind IN ('task', 'tag')),
    name         TEXT NOT NULL,
    suspended_by TEXT NOT NULL,
    since        INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT, WITHOUT ROWID;
