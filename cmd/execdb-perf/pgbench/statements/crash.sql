-- The crash of the job :job as PostgreSQL alone commits it, one transaction written statement
-- by statement: the job row updated, its two crash key-values, its history entry, its outbox
-- message.
BEGIN;
UPDATE jobs SET state = 'CRASHED', crash_notify = 'taskotron', crash_cause = 'minion', crash_fatal = false,
    finished_at = now(), updated_at = now(), state_entered_at = now()
WHERE uuid = :job::uuid
RETURNING finished_at AS finished \gset
INSERT INTO crash_keyvals (job_uuid, key, position, value)
VALUES (:job::uuid, 'step', 0, 'MINION_CREATION'), (:job::uuid, 'reason', 0, 'TIMED_OUT');
INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
VALUES (:job::uuid, 'end', 'applied', 'http', gen_random_uuid()::text, '', 'RUNNING', 'CRASHED',
    '{"crash":{"cause":"minion","fatal": false,"notify":"taskotron","keyvals":{"step":["MINION_CREATION"],"reason":["TIMED_OUT"]}},"state":"CRASHED"}',
    now());
INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
VALUES (gen_random_uuid(), :job::uuid, 'org.fedoraproject.dev.execdb.job.crashed.taskotron.minion',
    convert_to('{"uuid":"' || :job::text || '","state":"CRASHED","taskname":"' || :taskname::text || '","item":"' || :item::text ||
        '","item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45-updates-testing"]},"source": null,"request_id":"' || :job::text ||
        '","runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}' ||
        ',"artifacts_url": null,"log_url": null,"crash":{"notify":"taskotron","cause":"minion","fatal": false,' ||
        '"keyvals":{"reason":["TIMED_OUT"],"step":["MINION_CREATION"]}},"attempt": 1,"rescheduled_from": null,"rescheduled_to": null,"created_at":"' ||
        :created::text || '","started_at":"' || :started::text || '","finished_at":"' || :finished::text || '","updated_at":"' || :finished::text ||
        '","href":"/api/v1/jobs/' || :job::text || '","previous_state":"RUNNING"}', 'UTF8'),
    ('{"execdb_cause":"minion","execdb_fatal":"false","execdb_state":"CRASHED","execdb_notify":"taskotron","fedora_messaging_schema":"execdb.job.v1","fedora_messaging_rpm_' ||
        split_part(:item::text, '-', 1) || '":"true","fedora_messaging_severity":"30","fedora_messaging_schema_package":"execdb-messages"}')::jsonb,
    now());
COMMIT;
