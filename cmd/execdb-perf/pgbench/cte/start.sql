-- The start of the job :job (set by create.sql) as PostgreSQL alone commits it, one
-- transaction: the job row updated, its history entry, its outbox message.
WITH j AS (
    UPDATE jobs SET state = 'RUNNING',
        runner = '{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}',
        started_at = now(), updated_at = now(), state_entered_at = now()
    WHERE uuid = :job::uuid
    RETURNING uuid, taskname, item, created_at, started_at
), e AS (
    INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
    SELECT uuid, 'start', 'applied', 'http', gen_random_uuid()::text, '', 'SCHEDULED', 'RUNNING',
        '{"runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}}',
        started_at
    FROM j
)
INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
SELECT gen_random_uuid(), uuid, 'org.fedoraproject.dev.execdb.job.running',
    convert_to('{"uuid":"' || uuid || '","state":"RUNNING","taskname":"' || taskname || '","item":"' || item ||
        '","item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45-updates-testing"]},"source": null,"request_id":"' || uuid ||
        '","runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}' ||
        ',"artifacts_url": null,"log_url": null,"crash": null,"attempt": 1,"rescheduled_from": null,"rescheduled_to": null,"created_at":"' ||
        created_at || '","started_at":"' || started_at || '","finished_at": null,"updated_at":"' || started_at ||
        '","href":"/api/v1/jobs/' || uuid || '","previous_state":"SCHEDULED"}', 'UTF8'),
    ('{"execdb_state":"RUNNING","fedora_messaging_schema":"execdb.job.v1","fedora_messaging_rpm_' || split_part(item, '-', 1) ||
        '":"true","fedora_messaging_severity":"20","fedora_messaging_schema_package":"execdb-messages"}')::jsonb,
    started_at
FROM j;
