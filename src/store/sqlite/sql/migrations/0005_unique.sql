-- kessel's SQLite schema: unique jobs.
--
-- A unique job keeps its key in `unique_key` while it may hold it; its
-- scope (0 waiting, 1 unfinished, 2 window) and, for a window, its end
-- (`unique_until`, microseconds) say until when. The index lets no two
-- rows keep one key: a new job first clears the key from a row whose
-- hold has ended, then takes it.
ALTER TABLE kessel_jobs ADD COLUMN unique_key TEXT;
ALTER TABLE kessel_jobs ADD COLUMN unique_scope INTEGER;
ALTER TABLE kessel_jobs ADD COLUMN unique_until INTEGER;
CREATE UNIQUE INDEX kessel_jobs_by_unique_key ON kessel_jobs (unique_key) WHERE unique_key IS NOT NULL;
