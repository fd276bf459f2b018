-- kessel schema version 9: suspensions, shared by every process.
-- `{schema}` is replaced by the store's schema name.
--
-- One row per suspended task or tag. A process suspends or resumes with
-- an insert or a delete that notifies the schema's channel with the
-- payload `suspensions` in the same statement; every process's listener
-- then reads this table again. A process reads it when it starts, so it
-- starts suspended.
CREATE TABLE {schema}.suspensions (
    kind         text        NOT NULL CHECK (kind IN ('task', 'tag')),
    name         text        NOT NULL,
    suspended_by text        NOT NULL,
    since        timestamptz NOT NULL,
    PRIMARY KEY (kind, name)
);
