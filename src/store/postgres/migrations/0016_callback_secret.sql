-- kessel schema version 16: a job's own callback secret.
-- `{schema}` is replaced by the store's schema name.
--
-- The name of the secret that signs a job's own callback
-- (`NewJob::callback_secret`): only the name, never the secret, which
-- stays with the process that delivers (`Webhooks::secret`). Set once, at
-- insert; NULL for a job that names none (every job stored before).
--
-- Deliveries are found by reference through `jobs_reference` (version 1).
ALTER TABLE {schema}.jobs ADD COLUMN callback_secret text;
