-- Statistics read their jobs from the indexes alone (index-only scans, docs/performance.md):
-- the two indexes a stats query starts from (a time window, or a state and a time window) carry
-- the columns stats group by and measure. taskname is the only text of unbounded length they
-- carry (at most 1024 bytes, schemas.MaxKeyBytes), so an entry stays under PostgreSQL's limit
-- of about 2,700 bytes. A job's state change already writes a new entry in every index of jobs
-- (state and its times are indexed), so this widens those entries, it adds none.
DROP INDEX jobs_created_at_idx;
CREATE INDEX jobs_created_at_idx ON jobs (created_at DESC, uuid DESC)
    INCLUDE (state, taskname, crash_notify, crash_cause, crash_fatal, started_at, finished_at, rescheduled_to);
DROP INDEX jobs_state_idx;
CREATE INDEX jobs_state_idx ON jobs (state, created_at DESC)
    INCLUDE (uuid, taskname, crash_notify, crash_cause, crash_fatal, started_at, finished_at, rescheduled_to);

-- A crash key-value filter (EXISTS … key = $1 AND value = $2) and a grouping by one (a join on
-- job_uuid and key, reading value) are answered from these indexes too.
DROP INDEX crash_keyvals_key_value_idx;
CREATE INDEX crash_keyvals_key_value_idx ON crash_keyvals (key, value, job_uuid);
ALTER TABLE crash_keyvals DROP CONSTRAINT crash_keyvals_pkey,
    ADD CONSTRAINT crash_keyvals_pkey PRIMARY KEY (job_uuid, key, position) INCLUDE (value);
