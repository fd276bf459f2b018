-- kessel schema version 15: the event log that carries events between
-- the processes sharing the schema. `{schema}` is replaced by the store's
-- schema name.
--
-- Each row is a batch of one process's events (a JSON array, kept as
-- text: nothing reads inside it but kessel, and the server then neither
-- parses nor re-encodes it), with how many it holds, written only while
-- some process listens. Readers take rows in (xid, seq) order
-- and only rows whose transaction is older than every transaction still
-- running (`pg_snapshot_xmin`), so a row never appears behind a position
-- a reader has passed: the order is the same for every reader, and a
-- job's `created` event, written in the transaction that inserts the
-- job, comes before anything another process does with that job.
CREATE TABLE {schema}.event_log (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    node uuid NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    events text NOT NULL,
    entries integer NOT NULL,
    PRIMARY KEY (xid, seq)
);
CREATE INDEX event_log_written_at ON {schema}.event_log (written_at);
ALTER TABLE {schema}.event_log SET (
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0
);

-- The processes that have subscribers, with the position they have read
-- up to (the log is not pruned past it while they are seen).
CREATE TABLE {schema}.event_listeners (
    node uuid PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now(),
    read_xid xid8 NOT NULL,
    read_seq bigint NOT NULL
);

-- How far the log was pruned, and how many events that removed in all:
-- a reader behind that position missed them.
CREATE TABLE {schema}.event_log_pruned (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    upto_xid xid8 NOT NULL DEFAULT '0',
    upto_seq bigint NOT NULL DEFAULT 0,
    events bigint NOT NULL DEFAULT 0
);
INSERT INTO {schema}.event_log_pruned DEFAULT VALUES;
