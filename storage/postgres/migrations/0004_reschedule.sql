-- Rescheduling and the watchdog. The automatic rescheduler's mark lives on the job's own row,
-- so that the row lock that serialises every change of a job also serialises deciding about it
-- and carrying the decision out: NULL (not decided yet), 'planned' (a successor is due at
-- auto_reschedule_due_at), 'declined', 'done', or 'predates' for the crashes that happened
-- before this migration (switching automatic rescheduling on must not retry old crashes).
ALTER TABLE jobs ADD COLUMN auto_reschedule text
    CHECK (auto_reschedule IN ('planned', 'declined', 'done', 'predates'));
ALTER TABLE jobs ADD COLUMN auto_reschedule_due_at timestamptz;
ALTER TABLE jobs ADD CONSTRAINT jobs_auto_reschedule_due_check
    CHECK ((auto_reschedule = 'planned') = (auto_reschedule_due_at IS NOT NULL));
UPDATE jobs SET auto_reschedule = 'predates' WHERE state = 'CRASHED';

-- The watchdog's scans: RUNNING by started_at (SCHEDULED by created_at uses jobs_state_idx).
CREATE INDEX jobs_running_started_idx ON jobs (started_at) WHERE state = 'RUNNING';
-- The automatic rescheduler's scans: crashes not decided yet, and planned successors by due time.
CREATE INDEX jobs_auto_undecided_idx ON jobs (updated_at) WHERE state = 'CRASHED' AND auto_reschedule IS NULL;
CREATE INDEX jobs_auto_due_idx ON jobs (auto_reschedule_due_at) WHERE auto_reschedule = 'planned';
-- Successors by their parent, for lineage queries.
CREATE INDEX jobs_rescheduled_from_idx ON jobs (rescheduled_from) WHERE rescheduled_from IS NOT NULL;
