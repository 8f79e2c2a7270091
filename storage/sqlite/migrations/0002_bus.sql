-- The bus side, as in storage/postgres: message ids seen (the dedup keys of consumed messages),
-- events parked until their job exists, rejected messages. Bodies are BLOBs: the bytes as
-- received, whatever they are.
CREATE TABLE bus_seen (
    message_id  TEXT NOT NULL PRIMARY KEY,
    received_at TEXT NOT NULL
) STRICT;
CREATE INDEX bus_seen_received_at_idx ON bus_seen (received_at);

CREATE TABLE parked_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_uuid    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    origin      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    body        BLOB NOT NULL,
    received_at TEXT NOT NULL,
    parked_at   TEXT NOT NULL
) STRICT;
CREATE INDEX parked_events_job_idx ON parked_events (job_uuid, id);
CREATE INDEX parked_events_parked_at_idx ON parked_events (parked_at, id);

CREATE TABLE rejected_messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    transport      TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    field          TEXT    NOT NULL DEFAULT '',
    detail         TEXT    NOT NULL DEFAULT '',
    job_uuid       TEXT,
    body           BLOB    NOT NULL,
    body_size      INTEGER NOT NULL,
    body_truncated INTEGER NOT NULL CHECK (body_truncated IN (0, 1)),
    received_at    TEXT    NOT NULL,
    rejected_at    TEXT    NOT NULL
) STRICT;
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason, id);
