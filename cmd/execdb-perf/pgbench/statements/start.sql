-- The start of the job :job (set by create.sql) as PostgreSQL alone commits it, one
-- transaction written statement by statement: the job row updated, its history entry, its
-- outbox message.
BEGIN;
UPDATE jobs SET state = 'RUNNING',
    runner = '{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}',
    started_at = now(), updated_at = now(), state_entered_at = now()
WHERE uuid = :job::uuid
RETURNING started_at AS started \gset
INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
VALUES (:job::uuid, 'start', 'applied', 'http', gen_random_uuid()::text, '', 'SCHEDULED', 'RUNNING',
    '{"runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}}',
    now());
INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
VALUES (gen_random_uuid(), :job::uuid, 'org.fedoraproject.dev.execdb.job.running',
    convert_to('{"uuid":"' || :job::text || '","state":"RUNNING","taskname":"' || :taskname::text || '","item":"' || :item::text ||
        '","item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45-updates-testing"]},"source": null,"request_id":"' || :job::text ||
        '","runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}' ||
        ',"artifacts_url": null,"log_url": null,"crash": null,"attempt": 1,"rescheduled_from": null,"rescheduled_to": null,"created_at":"' ||
        :created::text || '","started_at":"' || :started::text || '","finished_at": null,"updated_at":"' || :started::text ||
        '","href":"/api/v1/jobs/' || :job::text || '","previous_state":"SCHEDULED"}', 'UTF8'),
    ('{"execdb_state":"RUNNING","fedora_messaging_schema":"execdb.job.v1","fedora_messaging_rpm_' || split_part(:item::text, '-', 1) ||
        '":"true","fedora_messaging_severity":"20","fedora_messaging_schema_package":"execdb-messages"}')::jsonb,
    now());
COMMIT;
