-- kessel schema version 7: the schedules of recurring jobs.
-- `{schema}` is replaced by the store's schema name.
--
-- One row per schedule, by name, shared by every process on the schema.
-- `spec` is kessel's JSON text for the schedule's timing, compared but
-- never parsed here. Every process's schedule service moves a due
-- schedule on with a compare-and-set on `next_run`, in the same
-- transaction as the insert of the tick's job: one process wins a tick,
-- and a tick has its job or is still due, never both or neither.
CREATE TABLE {schema}.schedules (
    name     text        PRIMARY KEY,
    task     text        NOT NULL,
    payload  text        NOT NULL,
    spec     text        NOT NULL,
    paused   boolean     NOT NULL DEFAULT false,
    next_run timestamptz NOT NULL,
    last_run timestamptz,
    last_job uuid
);
