-- kessel's SQLite schema, version 3: listings page through the primary key.
--
-- Jobs are listed in id order. Ids are UUIDv7 in canonical text form,
-- made when a job is created, so they sort in creation order (to the
-- millisecond between processes, exactly within one), and the primary
-- key's index already holds them in that order. The index by creation
-- time was one more B-tree written per job inserted.
DROP INDEX kessel_jobs_by_created;
