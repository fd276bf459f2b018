-- kessel schema version 1: jobs, their logs.
-- `{schema}` is replaced by the store's schema name.
CREATE TABLE {schema}.jobs (
    id               uuid        PRIMARY KEY,
    reference        text,
    task             text        NOT NULL,
    payload          text        NOT NULL,
    priority         bigint      NOT NULL,
    status           text        NOT NULL CHECK (status IN
                       ('scheduled', 'ready', 'running', 'retrying',
                        'completed', 'buried', 'expired', 'cancelled')),
    created_at       timestamptz NOT NULL,
    run_at           timestamptz NOT NULL,
    expires_at       timestamptz,
    attempts         bigint      NOT NULL DEFAULT 0,
    max_attempts     bigint,
    last_error       text,
    result           text,
    progress_current bigint,
    progress_total   bigint,
    finished_at      timestamptz,
    leased_by        uuid,
    lease_until      timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false
);

-- Claims: unleased pending jobs, best first.
CREATE INDEX jobs_claimable ON {schema}.jobs (priority, run_at, created_at, id)
    WHERE leased_by IS NULL AND status IN ('scheduled', 'ready', 'retrying');
-- The next due job of the served tasks (when to claim next).
CREATE INDEX jobs_next_due ON {schema}.jobs (task, run_at)
    WHERE leased_by IS NULL AND status IN ('scheduled', 'ready', 'retrying');
CREATE INDEX jobs_leased ON {schema}.jobs (lease_until) WHERE leased_by IS NOT NULL;
CREATE INDEX jobs_task_status ON {schema}.jobs (task, status);
CREATE INDEX jobs_created ON {schema}.jobs (created_at, id);
CREATE INDEX jobs_finished ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_reference ON {schema}.jobs (reference) WHERE reference IS NOT NULL;

CREATE TABLE {schema}.job_logs (
    job_id  uuid        NOT NULL REFERENCES {schema}.jobs (id) ON DELETE CASCADE,
    seq     bigserial,
    at      timestamptz NOT NULL,
    attempt bigint      NOT NULL,
    message text        NOT NULL,
    data    text,
    PRIMARY KEY (job_id, seq)
);
