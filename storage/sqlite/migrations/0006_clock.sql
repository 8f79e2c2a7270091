-- v1.1, times; the mirror of storage/postgres. state_entered_at is when the job entered its
-- current state by ExecDB's own clock: the watchdog counts from it, never from a time a worker
-- reported. Existing jobs get their best estimate: created_at for a SCHEDULED job, else
-- updated_at (when the start or the end was applied).
ALTER TABLE jobs ADD COLUMN state_entered_at TEXT NOT NULL DEFAULT '';
UPDATE jobs SET state_entered_at = CASE WHEN state = 'SCHEDULED' THEN created_at ELSE updated_at END;

-- Bring the times stored before v1.1 into the order created_at <= started_at <= finished_at <=
-- updated_at, as the state machine now keeps them (times are fixed-width text: they compare as
-- they sort).
UPDATE jobs SET started_at = created_at WHERE started_at < created_at;
UPDATE jobs SET finished_at = COALESCE(started_at, created_at) WHERE finished_at < COALESCE(started_at, created_at);
UPDATE jobs SET updated_at = max(COALESCE(started_at, ''), COALESCE(finished_at, ''))
    WHERE updated_at < max(COALESCE(started_at, ''), COALESCE(finished_at, ''));

-- The watchdog's scans, RUNNING and SCHEDULED jobs by state_entered_at.
DROP INDEX jobs_running_started_idx;
CREATE INDEX jobs_watchdog_idx ON jobs (state, state_entered_at) WHERE state IN ('RUNNING', 'SCHEDULED');
