-- Properties of the SQL API, checked over many random inputs (seeded, so
-- a failure reproduces).  Runs in one transaction that is rolled back.
--
--  * any string within the limits -- quotes, backslashes, control
--    characters, emoji, other multibyte text -- as topic, principal_id,
--    agent_id, worker_id or note: presence_snapshot() is valid JSON, reads
--    back every string unchanged, and is byte for byte what PostgreSQL's
--    own JSON escaping (to_json) gives.  The snapshot and the NOTIFY
--    payload share the escaping code; 02_wire.sql checks real payloads.
--  * counts equal list lengths (local and global, by kind) after random
--    sequences of track / untrack / set_status / untrack_by_fd / clear;
--  * the snapshot's seq equals the number of diffs the topic has had (the
--    seq of its last diff), and its entries are presence_list_global's.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
BEGIN;
SELECT plan(13);

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
        ',' ORDER BY p.since_ts, p.worker_id, p.fd), '') || ']}'
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
-- produce (a status diff with the widest seq, built here with to_json's
-- escaping) would be 8000 bytes or more: the table's CHECK refuses any row
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
         || to_json(r.worker)::text || '}') AS bytes
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
          'snapshot entries have exactly the diff keys minus kind and seq');

----------------------------------------------------------------------------
-- Counts equal list lengths, and the snapshot's seq counts the diffs, over
-- random sequences of operations.
----------------------------------------------------------------------------
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
CREATE TEMP TABLE expected_seq (topic text PRIMARY KEY, seq bigint NOT NULL);
INSERT INTO expected_seq SELECT 't' || n, 0 FROM generate_series(1, 3) n;

CREATE FUNCTION pg_temp.random_ops(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text; w text; f int; r float8; ok boolean; k int;
BEGIN
    FOR i IN 1 .. n LOOP
        t := 't' || (1 + floor(random() * 3)::int);
        w := 'w' || (1 + floor(random() * 3)::int);
        f := floor(random() * 6)::int;
        r := random();
        IF r < 0.45 THEN
            IF random() < 0.3 THEN
                ok := presence_track(t, f, 'p' || f, 'agent_for', 'bot' || f, w);
            ELSE
                ok := presence_track(t, f, 'p' || f, 'human', '', w);
            END IF;
            UPDATE expected_seq SET seq = seq + ok::int WHERE topic = t;
        ELSIF r < 0.65 THEN
            ok := presence_set_status(t, f, 'busy', 'n' || i, 0, w);
            UPDATE expected_seq SET seq = seq + ok::int WHERE topic = t;
        ELSIF r < 0.85 THEN
            ok := presence_untrack(t, f, w);
            UPDATE expected_seq SET seq = seq + ok::int WHERE topic = t;
        ELSIF r < 0.97 THEN
            UPDATE expected_seq e SET seq = e.seq + c.n
              FROM (SELECT topic, count(*) n FROM tep_presence
                     WHERE worker_id = w AND fd = f GROUP BY topic) c
             WHERE e.topic = c.topic;
            k := presence_untrack_by_fd(f, w);
        ELSE
            UPDATE expected_seq e SET seq = e.seq + c.n
              FROM (SELECT topic, count(*) n FROM tep_presence
                     WHERE worker_id = w GROUP BY topic) c
             WHERE e.topic = c.topic;
            k := presence_clear(w);
        END IF;
    END LOOP;
END
$$;

CREATE TEMP TABLE mismatches (round int, what text);
CREATE FUNCTION pg_temp.check_round(round int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text; w text;
BEGIN
    FOREACH t IN ARRAY ARRAY['t1', 't2', 't3'] LOOP
        FOREACH w IN ARRAY ARRAY['w1', 'w2', 'w3', 'w4'] LOOP
            IF presence_count(t, w) <> (SELECT count(*) FROM presence_list(t, w))
               OR presence_count_humans(t, w) <> (SELECT count(*) FROM presence_list(t, w) WHERE kind = 'human')
               OR presence_count_agents(t, w) <> (SELECT count(*) FROM presence_list(t, w) WHERE kind = 'agent_for')
               OR presence_count(t, w) <> (SELECT count(*) FROM tep_presence p WHERE p.topic = t AND p.worker_id = w) THEN
                INSERT INTO mismatches VALUES (round, 'local ' || t || ' ' || w);
            END IF;
        END LOOP;
        IF presence_count_global(t) <> (SELECT count(*) FROM presence_list_global(t))
           OR presence_count_humans_global(t) <> (SELECT count(*) FROM presence_list_global(t) WHERE kind = 'human')
           OR presence_count_agents_global(t) <> (SELECT count(*) FROM presence_list_global(t) WHERE kind = 'agent_for')
           OR presence_count_global(t) <> presence_count(t, 'w1') + presence_count(t, 'w2') + presence_count(t, 'w3')
           OR presence_count_global(t) <> (SELECT count(*) FROM tep_presence p WHERE p.topic = t) THEN
            INSERT INTO mismatches VALUES (round, 'global ' || t);
        END IF;
        IF (presence_snapshot(t) ->> 'seq')::bigint <> (SELECT seq FROM expected_seq e WHERE e.topic = t) THEN
            INSERT INTO mismatches VALUES (round, 'seq ' || t);
        END IF;
        IF (SELECT coalesce(json_agg(json_build_array(e ->> 'worker_id', (e ->> 'fd')::int,
                    e ->> 'principal', e ->> 'state', e ->> 'note'))::text, '[]')
              FROM json_array_elements(presence_snapshot(t) -> 'entries') e)
           <> (SELECT coalesce(json_agg(json_build_array(worker_id, fd, principal_id,
                    status_state, status_note))::text, '[]')
                 FROM presence_list_global(t)) THEN
            INSERT INTO mismatches VALUES (round, 'snapshot entries ' || t);
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    FOR r IN 1 .. 20 LOOP
        PERFORM pg_temp.random_ops(30);
        PERFORM pg_temp.check_round(r);
    END LOOP;
END
$$;

SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'local%'), 0::bigint,
          'local counts (all, humans, agents) equal presence_list lengths (20 rounds x 30 random ops)');
SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'global%'), 0::bigint,
          'global counts equal presence_list_global lengths and the sum over workers');
SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'seq%'), 0::bigint,
          'snapshot seq equals the number of diffs of its topic');
SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'snapshot%'), 0::bigint,
          'snapshot entries are presence_list_global''s, in its order');
SELECT cmp_ok((SELECT sum(seq) FROM expected_seq), '>', 100::numeric,
              'the random operations did produce diffs');
SELECT ok((SELECT count(DISTINCT (kind, worker_id)) FROM tep_presence) >= 4,
          'the random state mixes kinds and workers');

SELECT * FROM finish();
ROLLBACK;
