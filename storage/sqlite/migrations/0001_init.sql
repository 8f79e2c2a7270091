-- Jobs, their key-values (one row per key and value, as ResultsDB keeps result data), their
-- history and the outbox of job-state messages. The mirror of storage/postgres, adapted:
-- uuids are canonical lowercase text, JSON is text, booleans are 0/1 and times are fixed-width
-- UTC text '2006-01-02T15:04:05.000000Z', which sorts in time order and which SQLite's date
-- functions read. STRICT makes SQLite reject a value of the wrong type.
CREATE TABLE jobs (
    uuid             TEXT    NOT NULL PRIMARY KEY,
    state            TEXT    NOT NULL CHECK (state IN ('SCHEDULED', 'RUNNING', 'FINISHED', 'CRASHED')),
    taskname         TEXT    NOT NULL,
    item             TEXT    NOT NULL,
    item_type        TEXT    NOT NULL,
    arch             TEXT    NOT NULL,
    source_msg_id    TEXT,
    source_topic     TEXT,
    request_id       TEXT    NOT NULL UNIQUE,
    runner           TEXT,
    artifacts_url    TEXT,
    log_url          TEXT,
    crash_notify     TEXT,
    crash_cause      TEXT,
    crash_fatal      INTEGER CHECK (crash_fatal IN (0, 1)),
    attempt          INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    rescheduled_from TEXT,
    rescheduled_to   TEXT,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    updated_at       TEXT    NOT NULL,
    CHECK ((state = 'CRASHED') = (crash_notify IS NOT NULL))
) STRICT;
CREATE INDEX jobs_created_at_idx ON jobs (created_at, uuid);
CREATE INDEX jobs_state_idx ON jobs (state, created_at);

CREATE TABLE job_data (
    job_uuid TEXT    NOT NULL REFERENCES jobs (uuid) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    position INTEGER NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (job_uuid, key, position)
) STRICT;
CREATE INDEX job_data_key_value_idx ON job_data (key, value);

CREATE TABLE crash_keyvals (
    job_uuid TEXT    NOT NULL REFERENCES jobs (uuid) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    position INTEGER NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (job_uuid, key, position)
) STRICT;
CREATE INDEX crash_keyvals_key_value_idx ON crash_keyvals (key, value);

-- AUTOINCREMENT: an id is never reused, even after rows are deleted, so ids stay in commit order.
CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_uuid    TEXT NOT NULL REFERENCES jobs (uuid) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    origin      TEXT NOT NULL,
    message_id  TEXT NOT NULL DEFAULT '',
    actor       TEXT NOT NULL DEFAULT '',
    state_from  TEXT NOT NULL DEFAULT '',
    state_to    TEXT NOT NULL,
    detail      TEXT,
    recorded_at TEXT NOT NULL
) STRICT;
CREATE INDEX job_events_job_idx ON job_events (job_uuid, id);

-- body keeps the exact bytes that are published, so that a re-send is byte-for-byte the same.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT NOT NULL UNIQUE,
    job_uuid     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    body         TEXT NOT NULL,
    headers      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    published_at TEXT
) STRICT;
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
