-- The crash of the job :job as PostgreSQL alone commits it, one transaction: the job row
-- updated, its two crash key-values, its history entry, its outbox message.
WITH j AS (
    UPDATE jobs SET state = 'CRASHED', crash_notify = 'taskotron', crash_cause = 'minion', crash_fatal = false,
        finished_at = now(), updated_at = now(), state_entered_at = now()
    WHERE uuid = :job::uuid
    RETURNING uuid, taskname, item, created_at, started_at, finished_at
), k AS (
    INSERT INTO crash_keyvals (job_uuid, key, position, value)
    SELECT uuid, kv.key, 0, kv.value FROM j, (VALUES ('step', 'MINION_CREATION'), ('reason', 'TIMED_OUT')) AS kv (key, value)
), e AS (
    INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
    SELECT uuid, 'end', 'applied', 'http', gen_random_uuid()::text, '', 'RUNNING', 'CRASHED',
        '{"crash":{"cause":"minion","fatal": false,"notify":"taskotron","keyvals":{"step":["MINION_CREATION"],"reason":["TIMED_OUT"]}},"state":"CRASHED"}',
        finished_at
    FROM j
)
INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
SELECT gen_random_uuid(), uuid, 'org.fedoraproject.dev.execdb.job.crashed.taskotron.minion',
    convert_to('{"uuid":"' || uuid || '","state":"CRASHED","taskname":"' || taskname || '","item":"' || item ||
        '","item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45-updates-testing"]},"source": null,"request_id":"' || uuid ||
        '","runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}' ||
        ',"artifacts_url": null,"log_url": null,"crash":{"notify":"taskotron","cause":"minion","fatal": false,' ||
        '"keyvals":{"reason":["TIMED_OUT"],"step":["MINION_CREATION"]}},"attempt": 1,"rescheduled_from": null,"rescheduled_to": null,"created_at":"' ||
        created_at || '","started_at":"' || started_at || '","finished_at":"' || finished_at || '","updated_at":"' || finished_at ||
        '","href":"/api/v1/jobs/' || uuid || '","previous_state":"RUNNING"}', 'UTF8'),
    ('{"execdb_cause":"minion","execdb_fatal":"false","execdb_state":"CRASHED","execdb_notify":"taskotron","fedora_messaging_schema":"execdb.job.v1","fedora_messaging_rpm_' ||
        split_part(item, '-', 1) || '":"true","fedora_messaging_severity":"30","fedora_messaging_schema_package":"execdb-messages"}')::jsonb,
    finished_at
FROM j;
