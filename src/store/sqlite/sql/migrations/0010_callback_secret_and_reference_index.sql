-- kessel's SQLite schema, version 10: a job's own callback secret, and
-- jobs found by reference through an index.
--
-- The name of the secret that signs a job's own callback
-- (`NewJob::callback_secret`): only the name, never the secret, which
-- stays with the process that delivers (`Webhooks::secret`). Set once, at
-- insert; NULL for a job that names none (every job stored before).
ALTER TABLE kessel_jobs ADD COLUMN callback_secret TEXT;

-- A search by reference (the deliveries of a job's callback, reference
-- `webhook:{id}`, for `Queue::callbacks` and `GET /jobs/{id}`; any
-- `reference=` filter) reads this index, in id order, instead of every
-- job. Most jobs have no reference, and are left out of it.
CREATE INDEX kessel_jobs_by_reference ON kessel_jobs (reference, id) WHERE reference IS NOT NULL;
