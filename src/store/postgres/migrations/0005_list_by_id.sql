-- kessel schema version 5: listings page through the primary key.
-- `{schema}` is replaced by the store's schema name.

-- Jobs are listed in id order. Ids are UUIDv7, made when a job is
-- created, so id order is creation order (to the millisecond between
-- processes, exactly within one), and the primary key already holds it.
-- The index by creation time cost one more entry for every job inserted
-- and for every job a claim released (completed, retried, released):
-- about a fifth of a bulk insert's work on the server.
DROP INDEX {schema}.jobs_created;
