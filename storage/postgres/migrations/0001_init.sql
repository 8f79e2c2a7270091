-- Jobs, their key-values (one row per key and value, as ResultsDB keeps result data), their
-- history and the outbox of job-state messages.
CREATE TABLE jobs (
    uuid             uuid PRIMARY KEY,
    state            text NOT NULL CHECK (state IN ('SCHEDULED', 'RUNNING', 'FINISHED', 'CRASHED')),
    taskname         text NOT NULL,
    item             text NOT NULL,
    item_type        text NOT NULL,
    arch             text NOT NULL,
    source_msg_id    text,
    source_topic     text,
    request_id       text NOT NULL UNIQUE,
    runner           jsonb,
    artifacts_url    text,
    log_url          text,
    crash_notify     text,
    crash_cause      text,
    crash_fatal      boolean,
    attempt          integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    rescheduled_from uuid,
    rescheduled_to   uuid,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL,
    CHECK ((state = 'CRASHED') = (crash_notify IS NOT NULL))
);
CREATE INDEX jobs_created_at_idx ON jobs (created_at DESC, uuid DESC);
CREATE INDEX jobs_state_idx ON jobs (state, created_at DESC);

CREATE TABLE job_data (
    job_uuid uuid    NOT NULL REFERENCES jobs (uuid) ON DELETE CASCADE,
    key      text    NOT NULL,
    position integer NOT NULL,
    value    text    NOT NULL,
    PRIMARY KEY (job_uuid, key, position)
);
CREATE INDEX job_data_key_value_idx ON job_data (key, value);

CREATE TABLE crash_keyvals (
    job_uuid uuid    NOT NULL REFERENCES jobs (uuid) ON DELETE CASCADE,
    key      text    NOT NULL,
    position integer NOT NULL,
    value    text    NOT NULL,
    PRIMARY KEY (job_uuid, key, position)
);
CREATE INDEX crash_keyvals_key_value_idx ON crash_keyvals (key, value);

CREATE TABLE job_events (
    id          bigserial PRIMARY KEY,
    job_uuid    uuid        NOT NULL REFERENCES jobs (uuid) ON DELETE CASCADE,
    kind        text        NOT NULL,
    verdict     text        NOT NULL,
    origin      text        NOT NULL,
    message_id  text        NOT NULL DEFAULT '',
    actor       text        NOT NULL DEFAULT '',
    state_from  text        NOT NULL DEFAULT '',
    state_to    text        NOT NULL,
    detail      jsonb,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX job_events_job_idx ON job_events (job_uuid, id);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    job_uuid     uuid        NOT NULL,
    topic        text        NOT NULL,
    body         bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
