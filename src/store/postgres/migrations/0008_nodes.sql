-- kessel schema version 8: the processes on the schema (nodes), and the
-- leader's lease. `{schema}` is replaced by the store's schema name.
--
-- One row per process, keyed by its lease owner id: registered at start,
-- renewed at the cadence of the job lease heartbeats, deleted when the
-- process shuts down. A row whose `lease_until` passed is a node gone
-- (killed, cut off); the leader deletes it after the retention of gone
-- nodes.
CREATE TABLE {schema}.nodes (
    id             uuid        PRIMARY KEY,
    host           text        NOT NULL,
    pid            bigint      NOT NULL,
    version        text        NOT NULL,
    tags           text[]      NOT NULL,
    concurrency    bigint      NOT NULL,
    running        bigint      NOT NULL,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    lease_until    timestamptz NOT NULL
);

-- One row: who leads, until when, and whether it runs workers. A node
-- takes it or renews it with one UPDATE (when it leads already, when
-- nobody's lease lasts, or when it runs workers and the leader does not),
-- so it holds across pooled sessions, unlike a session advisory lock.
CREATE TABLE {schema}.leader (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    owner       uuid,
    lease_until timestamptz NOT NULL,
    serves      boolean     NOT NULL DEFAULT false
);
INSERT INTO {schema}.leader (one, owner, lease_until) VALUES (true, NULL, '-infinity');
