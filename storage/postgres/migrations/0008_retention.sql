-- v1.1, retention: rejected messages are pruned by their age, and a job is kept while the
-- outbox has a message about it.
CREATE INDEX rejected_messages_rejected_at_idx ON rejected_messages (rejected_at);
CREATE INDEX outbox_job_idx ON outbox (job_uuid);
