-- One ExecDB create as PostgreSQL alone commits it, one transaction written statement by
-- statement, a round trip each: the job row, its job_data row, its history entry and its
-- outbox message (the job-state message of ExecDB's size and shape). ../cte/create.sql writes
-- the same rows in one statement. Literal JSON has a space after a colon before a value that
-- is not a string: pgbench reads a colon followed by a name as a variable.
\set task random(1, 8)
\set pkg random(1, 100000)
BEGIN;
INSERT INTO jobs (uuid, state, taskname, item, item_type, arch, request_id, attempt,
    created_at, updated_at, state_entered_at)
SELECT u, 'SCHEDULED',
    (ARRAY['rpmlint', 'rpmdeplint', 'abicheck', 'rpmgrill', 'python-versions', 'upgradepath', 'dist.depcheck', 'modulelint'])[:task::int],
    'pkg' || :pkg::int || '-1.0-1.fc45', 'koji_build', 'noarch', u::text, 1, now(), now(), now()
FROM gen_random_uuid() AS u
RETURNING uuid AS job, taskname AS taskname, item AS item, created_at AS created \gset
INSERT INTO job_data (job_uuid, key, position, value) VALUES (:job::uuid, 'koji_tag', 0, 'f45-updates-testing');
INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
VALUES (:job::uuid, 'create', 'applied', 'http', gen_random_uuid()::text, '', '', 'SCHEDULED',
    ('{"data":{"koji_tag":["f45-updates-testing"]},"item":"' || :item::text || '","taskname":"' || :taskname::text ||
     '","item_type":"koji_build","request_id":"' || :job::text || '"}')::jsonb,
    now());
INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
VALUES (gen_random_uuid(), :job::uuid, 'org.fedoraproject.dev.execdb.job.scheduled',
    convert_to('{"uuid":"' || :job::text || '","state":"SCHEDULED","taskname":"' || :taskname::text || '","item":"' || :item::text ||
        '","item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45-updates-testing"]},"source": null,"request_id":"' || :job::text ||
        '","runner": null,"artifacts_url": null,"log_url": null,"crash": null,"attempt": 1,"rescheduled_from": null,"rescheduled_to": null,"created_at":"' ||
        :created::text || '","started_at": null,"finished_at": null,"updated_at":"' || :created::text || '","href":"/api/v1/jobs/' || :job::text ||
        '","previous_state": null}', 'UTF8'),
    ('{"execdb_state":"SCHEDULED","fedora_messaging_schema":"execdb.job.v1","fedora_messaging_rpm_pkg' || :pkg::int ||
        '":"true","fedora_messaging_severity":"20","fedora_messaging_schema_package":"execdb-messages"}')::jsonb,
    now());
COMMIT;
