-- v1.1: GET /api/v1/rejected filters by message id and by job; the mirror of storage/postgres.
CREATE INDEX rejected_messages_message_id_idx ON rejected_messages (message_id);
CREATE INDEX rejected_messages_job_idx ON rejected_messages (job_uuid, id) WHERE job_uuid IS NOT NULL;
