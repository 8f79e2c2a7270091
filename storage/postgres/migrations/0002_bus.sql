-- The bus side: message ids seen (the dedup keys of consumed messages), events parked until
-- their job exists, rejected messages, and a notification that wakes the outbox relay.

-- One row per consumed message id, pruned after a retention period.
CREATE TABLE bus_seen (
    message_id  text        PRIMARY KEY,
    received_at timestamptz NOT NULL
);
-- BRIN: ids arrive in time order, and a BRIN index costs next to nothing to maintain.
CREATE INDEX bus_seen_received_at_idx ON bus_seen USING brin (received_at);

-- Starts and ends for jobs that do not exist yet. payload is the decoded event; body the raw
-- message body for the rejection, should the job never come.
CREATE TABLE parked_events (
    id          bigserial   PRIMARY KEY,
    job_uuid    uuid        NOT NULL,
    kind        text        NOT NULL,
    origin      text        NOT NULL,
    message_id  text        NOT NULL,
    topic       text        NOT NULL,
    payload     jsonb       NOT NULL,
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL
);
CREATE INDEX parked_events_job_idx ON parked_events (job_uuid, id);
CREATE INDEX parked_events_parked_at_idx ON parked_events (parked_at, id);

CREATE TABLE rejected_messages (
    id             bigserial   PRIMARY KEY,
    transport      text        NOT NULL,
    topic          text        NOT NULL,
    message_id     text        NOT NULL,
    reason         text        NOT NULL,
    field          text        NOT NULL DEFAULT '',
    detail         text        NOT NULL DEFAULT '',
    job_uuid       uuid,
    body           bytea       NOT NULL,
    body_size      integer     NOT NULL,
    body_truncated boolean     NOT NULL,
    received_at    timestamptz NOT NULL,
    rejected_at    timestamptz NOT NULL
);
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason, id);

-- Wake the relay (LISTEN execdb_outbox) once per transaction that queued messages; it also
-- polls, so a lost notification only delays.
CREATE FUNCTION execdb_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('execdb_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION execdb_outbox_notify();
