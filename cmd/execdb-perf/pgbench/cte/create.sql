-- One ExecDB create as PostgreSQL alone commits it, one transaction: the job row, its job_data
-- row, its history entry and its outbox message (the job-state message of ExecDB's size and
-- shape), in one statement and so one round trip (execdb-perf runs it with -M prepared).
-- ../statements/create.sql writes the same rows statement by statement. Literal JSON has a
-- space after a colon before a value that is not a string: pgbench reads a colon followed by
-- a name as a variable.
\set task random(1, 8)
\set pkg random(1, 100000)
WITH j AS (
    INSERT INTO jobs (uuid, state, taskname, item, item_type, arch, request_id, attempt,
        created_at, updated_at, state_entered_at)
    SELECT u, 'SCHEDULED',
        (ARRAY['rpmlint', 'rpmdeplint', 'abicheck', 'rpmgrill', 'python-versions', 'upgradepath', 'dist.depcheck', 'modulelint'])[:task::int],
        'pkg' || :pkg::int || '-1.0-1.fc45', 'koji_build', 'noarch', u::text, 1, now(), now(), now()
    FROM gen_random_uuid() AS u
    RETURNING uuid, taskname, item, created_at
), d AS (
    INSERT INTO job_data (job_uuid, key, position, value)
    SELECT uuid, 'koji_tag', 0, 'f45-updates-testing' FROM j
), e AS (
    INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
    SELECT uuid, 'create', 'applied', 'http', gen_random_uuid()::text, '', '', 'SCHEDULED',
        ('{"data":{"koji_tag":["f45-updates-testing"]},"item":"' || item || '","taskname":"' || taskname ||
         '","item_type":"koji_build","request_id":"' || uuid || '"}')::jsonb,
        created_at
    FROM j
)
INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
SELECT gen_random_uuid(), uuid, 'org.fedoraproject.dev.execdb.job.scheduled',
    convert_to('{"uuid":"' || uuid || '","state":"SCHEDULED","taskname":"' || taskname || '","item":"' || item ||
        '","item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45-updates-testing"]},"source": null,"request_id":"' || uuid ||
        '","runner": null,"artifacts_url": null,"log_url": null,"crash": null,"attempt": 1,"rescheduled_from": null,"rescheduled_to": null,"created_at":"' ||
        created_at || '","started_at": null,"finished_at": null,"updated_at":"' || created_at || '","href":"/api/v1/jobs/' || uuid ||
        '","previous_state": null}', 'UTF8'),
    ('{"execdb_state":"SCHEDULED","fedora_messaging_schema":"execdb.job.v1","fedora_messaging_rpm_pkg' || :pkg::int ||
        '":"true","fedora_messaging_severity":"20","fedora_messaging_schema_package":"execdb-messages"}')::jsonb,
    created_at
FROM j
RETURNING job_uuid AS job \gset
