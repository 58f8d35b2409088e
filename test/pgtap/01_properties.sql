-- Properties of the SQL API, checked over many random inputs (seeded, so
-- a failure reproduces).  Runs in one transaction that is rolled back.
--
--  * any string within the limits -- quotes, backslashes, control
--    characters, emoji, other multibyte text -- as topic, principal_id,
--    agent_id, worker_id or note: presence_snapshot() is valid JSON, reads
--    back every string unchanged, and is byte for byte what PostgreSQL's
--    own JSON escaping (to_json) gives.  The snapshot and the NOTIFY
--    payload share the escaping code; 02_wire.sql checks real payloads.
--
-- 04_commit_properties.sql checks counts and seqs over committed changes.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
BEGIN;
SELECT plan(7);

-- Private, empty tables for the test (all rolled back at the end).
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
SELECT setseed(0.4242);

-- A random string of at most max_bytes bytes (and at least one character
-- when nonempty), from a pool of awkward characters.
CREATE FUNCTION pg_temp.rand_str(max_bytes int, nonempty boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    pool text[] := ARRAY['a', 'Z', '0', ' ', '"', '\', '/', '''', ':', '{', '}',
        '[', ',', E'\n', E'\r', E'\t', E'\b', E'\f', chr(1), chr(2), chr(27),
        chr(31), chr(127), 'é', 'ß', '€', '☕', '🦊', '👩‍💻', chr(8232),
        chr(8233), chr(65279), 'ـ', '中', '\u0000', '\"', 'presence:'];
    target int := (random() * max_bytes)::int;
    s text := '';
    c text;
BEGIN
    IF random() < 0.1 THEN
        target := max_bytes;            -- often right at the limit
    END IF;
    LOOP
        c := pool[1 + floor(random() * array_length(pool, 1))::int];
        EXIT WHEN octet_length(s || c) > target;
        s := s || c;
    END LOOP;
    IF s = '' AND nonempty THEN
        s := 'x';
    END IF;
    RETURN s;
END
$$;

-- n random control characters (each escapes to six bytes in JSON).
CREATE FUNCTION pg_temp.ctl_str(n int) RETURNS text LANGUAGE sql AS $$
SELECT string_agg(chr(1 + floor(random() * 31)::int), '') FROM generate_series(1, n)
$$;

-- What the snapshot of a topic must be, built with to_json's escaping.
CREATE FUNCTION pg_temp.expected_snapshot(t text) RETURNS text
LANGUAGE sql AS $$
SELECT '{"topic":' || to_json(t)::text
    || ',"seq":' || coalesce((SELECT seq FROM presence_topic_seq s WHERE s.topic = t), 0)
    || ',"entries":[' || coalesce(string_agg(
           '{"topic":' || to_json(p.topic)::text
        || ',"principal":' || to_json(p.principal_id)::text
        || ',"ekind":' || to_json(p.kind)::text
        || ',"agent_id":' || to_json(p.agent_id)::text
        || ',"fd":' || p.fd
        || ',"since":' || p.since_ts
        || ',"state":' || to_json(p.status_state)::text
        || ',"note":' || to_json(p.status_note)::text
        || ',"until_ts":' || p.status_until
        || ',"worker_id":' || to_json(p.worker_id)::text || '}',
        ',' ORDER BY p.since_ts, p.worker_id, p.fd), '')
    || '],"epoch":"' || presence_epoch() || '"}'
  FROM tep_presence p WHERE p.topic = t
$$;

----------------------------------------------------------------------------
-- Round trips of random strings through track / set_status / snapshot.
----------------------------------------------------------------------------
-- Every 8th case is all control characters at the byte limits, with a
-- note of random length: its status diff is sometimes over NOTIFY's limit.
CREATE TEMP TABLE cases AS
SELECT i,
       CASE WHEN i % 8 = 0 THEN pg_temp.ctl_str(255) ELSE pg_temp.rand_str(255) END AS topic,
       CASE WHEN i % 8 = 0 THEN pg_temp.ctl_str(255) ELSE pg_temp.rand_str(255) END AS principal,
       CASE WHEN i % 8 = 0 THEN pg_temp.ctl_str(255) ELSE pg_temp.rand_str(255) END AS agent,
       CASE WHEN i % 8 = 0 THEN pg_temp.ctl_str(255) ELSE pg_temp.rand_str(255) END AS worker,
       CASE WHEN i % 8 = 0 THEN coalesce(pg_temp.ctl_str((random() * 1024)::int), '')
            ELSE pg_temp.rand_str(1024, false) END AS note,
       (ARRAY['available', 'busy', 'blocked'])[1 + i % 3] AS state,
       (random() * 4102444800)::bigint AS until_ts
  FROM generate_series(1, 400) i;
-- One entry per topic, so that each case's status diff has seq 2.
DELETE FROM cases c USING cases d WHERE c.i > d.i AND c.topic = d.topic;

CREATE TEMP TABLE results AS
SELECT c.*,
       presence_track(c.topic, c.i, c.principal,
                      CASE WHEN c.i % 2 = 0 THEN 'agent_for' ELSE 'human' END,
                      CASE WHEN c.i % 2 = 0 THEN c.agent ELSE '' END,
                      c.worker) AS tracked
  FROM cases c;
-- A few notes of control characters make a diff too long for NOTIFY; those
-- must be refused (22023) and the rest accepted.
CREATE FUNCTION pg_temp.try_status(c cases) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM presence_set_status(c.topic, c.i, c.state, c.note, c.until_ts, c.worker);
    RETURN 'ok';
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN 'too long';
END
$$;
ALTER TABLE results ADD COLUMN status text;
UPDATE results r SET status = pg_temp.try_status(c) FROM cases c WHERE c.i = r.i;

SELECT is((SELECT count(*) FROM results WHERE tracked), (SELECT count(*) FROM cases),
          'every random case is tracked (' || (SELECT count(*) FROM cases) || ' cases)');

-- A status is refused exactly when the longest diff its entry could then
-- produce (a status diff with the widest seq, its epoch and a signature,
-- built here with to_json's escaping) would be 8000 bytes or more: the table's CHECK refuses any row
-- that could not leave.  Both outcomes happen among the cases.
CREATE TEMP TABLE status_payloads AS
SELECT r.i, r.status, octet_length(
         length('presence:' || r.topic) || ':presence:' || r.topic
         || '{"kind":"status","topic":' || to_json(r.topic)::text
         || ',"principal":' || to_json(r.principal)::text
         || ',"ekind":' || to_json(CASE WHEN r.i % 2 = 0 THEN 'agent_for' ELSE 'human' END)::text
         || ',"agent_id":' || to_json(CASE WHEN r.i % 2 = 0 THEN r.agent ELSE '' END)::text
         || ',"fd":' || r.i || ',"since":' || trunc(extract(epoch FROM now()))::bigint
         || ',"state":' || to_json(r.state)::text
         || ',"note":' || to_json(r.note)::text
         || ',"until_ts":' || r.until_ts || ',"seq":9223372036854775807,"worker_id":'
         || to_json(r.worker)::text || ',"epoch":"' || presence_epoch()
         || '","sig":"' || repeat('0', 64) || '"}') AS bytes
  FROM results r;
SELECT is((SELECT count(*) FROM status_payloads
            WHERE (status = 'too long') <> (bytes >= 8000)), 0::bigint,
          'set_status is refused exactly when its longest diff would be >= 8000 bytes');
SELECT ok((SELECT count(*) FILTER (WHERE status = 'too long') > 0
              AND count(*) FILTER (WHERE status = 'ok' AND bytes > 7000) > 0
             FROM status_payloads),
          'the cases include refused diffs and accepted ones close to the limit ('
          || (SELECT count(*) FILTER (WHERE status = 'too long') FROM status_payloads)
          || ' refused)');

CREATE TEMP TABLE snaps AS
SELECT r.*, presence_snapshot(r.topic)::text AS snap,
       pg_temp.expected_snapshot(r.topic) AS expected
  FROM results r;

SELECT is((SELECT count(*) FROM snaps s
            WHERE NOT EXISTS (SELECT 1 FROM (SELECT s.snap::json) j)), 0::bigint,
          'every snapshot parses as JSON');
SELECT is((SELECT count(*) FROM snaps s, json_array_elements(s.snap::json -> 'entries') e
            WHERE e ->> 'worker_id' = s.worker
              AND e ->> 'fd' = s.i::text
              AND s.snap::json ->> 'topic' = s.topic
              AND e ->> 'topic' = s.topic
              AND e ->> 'principal' = s.principal
              AND e ->> 'agent_id' = CASE WHEN s.i % 2 = 0 THEN s.agent ELSE '' END
              AND e ->> 'note' = CASE s.status WHEN 'ok' THEN s.note ELSE '' END
              AND e ->> 'state' = CASE s.status WHEN 'ok' THEN s.state ELSE 'available' END
              AND (e ->> 'until_ts')::bigint = CASE s.status WHEN 'ok' THEN s.until_ts ELSE 0 END),
          (SELECT count(*) FROM snaps),
          'every string reads back unchanged from the snapshot JSON');
SELECT is((SELECT count(*) FROM snaps WHERE snap IS DISTINCT FROM expected), 0::bigint,
          'every snapshot is byte for byte PostgreSQL''s own JSON escaping');
SELECT is((SELECT string_agg(DISTINCT json_object_keys, ',')
             FROM snaps, json_array_elements(snap::json -> 'entries') e,
                  json_object_keys(e)), 
          'agent_id,ekind,fd,note,principal,since,state,topic,until_ts,worker_id',
          'snapshot entries have exactly the diff keys minus kind, seq and epoch');

SELECT * FROM finish();
ROLLBACK;
