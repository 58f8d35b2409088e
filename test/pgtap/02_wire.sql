-- Real NOTIFY payloads, as a LISTEN client receives them, for random
-- strings within the limits.  A second connection (dblink) listens on
-- tep_broadcast; a third makes the changes, each committed on its own, so
-- each diff is delivered; dblink_get_notify() reads what the listener got.
--
-- For every case (random topic, principal, agent_id, worker_id, note --
-- quotes, backslashes, control characters, emoji, multibyte):
--  * join, status and leave arrive, in that order, on tep_broadcast, from
--    the writer's backend;
--  * each payload is exactly <N>:presence:<topic><json>, N the length of
--    presence:<topic> in characters, the JSON byte for byte what to_json's
--    escaping gives, with keys in SPEC's order and then the epoch;
--  * the JSON parses and every string reads back unchanged;
--  * seq is 1, 2, 3 and the snapshot's seq afterwards is the last one.
-- The writer's rows are removed at the end; the rest is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
BEGIN;
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT plan(9);
SELECT setseed(0.1717);

CREATE FUNCTION pg_temp.rand_str(max_bytes int, nonempty boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    pool text[] := ARRAY['a', 'Z', '0', ' ', '"', '\', '/', '''', ':', '{', '}',
        '[', ',', E'\n', E'\r', E'\t', E'\b', E'\f', chr(1), chr(2), chr(27),
        chr(31), chr(127), 'é', 'ß', '€', '☕', '🦊', '👩‍💻', chr(8232),
        chr(65279), '中', '\u0000', '\"', 'presence:', '%s', repeat(chr(36), 2)];
    target int := (random() * max_bytes)::int;
    s text := '';
    c text;
BEGIN
    IF random() < 0.1 THEN
        target := max_bytes;
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

DO $$
DECLARE
    conn text := format('host=%s port=%s dbname=%s user=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1),
         current_setting('port'), current_database(), current_user);
BEGIN
    PERFORM dblink_connect('presence_tap_listener', conn);
    PERFORM dblink_connect('presence_tap_writer', conn);
    PERFORM dblink_exec('presence_tap_listener', 'LISTEN tep_broadcast');
    -- Leftovers of an interrupted run (every case's worker id starts
    -- with tapw:, every topic with tap:).
    PERFORM dblink_exec('presence_tap_writer',
        'DELETE FROM tep_presence WHERE worker_id LIKE ''tapw:%'';'
        ' DELETE FROM tep_presence_worker WHERE worker_id LIKE ''tapw:%'';'
        ' DELETE FROM presence_topic_seq WHERE topic LIKE ''tap:%''');
END
$$;
CREATE TEMP TABLE writer AS
SELECT pid FROM dblink('presence_tap_writer', 'SELECT pg_backend_pid()') AS t(pid int);

-- Cases: distinct topics the registry has never seen.
CREATE TEMP TABLE cases AS
SELECT i, 'tap:' || pg_temp.rand_str(251) AS topic, pg_temp.rand_str(255) AS principal,
       pg_temp.rand_str(255) AS agent, 'tapw:' || pg_temp.rand_str(250) AS worker,
       pg_temp.rand_str(1024, false) AS note,
       (ARRAY['available', 'busy', 'blocked'])[1 + i % 3] AS state,
       -- in the future: a background worker's sweep must not add diffs
       CASE WHEN i % 4 = 0 THEN 0
            ELSE trunc(extract(epoch FROM now()))::bigint + 86400
                 + (random() * 1e9)::bigint END AS until_ts,
       CASE WHEN i % 2 = 0 THEN 'agent_for' ELSE 'human' END AS kind
  FROM generate_series(1, 120) i;
DELETE FROM cases c USING cases d WHERE c.i > d.i AND c.topic = d.topic;
DELETE FROM cases c
 WHERE EXISTS (SELECT 1 FROM presence_topic_seq s WHERE s.topic = c.topic);
UPDATE cases SET agent = '' WHERE kind = 'human';

-- join, then read its since_ts; status; leave; snapshot.  Each dblink_exec
-- commits, so each diff is sent then.
CREATE TEMP TABLE runs (i int, since bigint, snap_seq bigint);
DO $$
DECLARE
    c record;
    since bigint;
BEGIN
    FOR c IN SELECT * FROM cases ORDER BY i LOOP
        PERFORM * FROM dblink('presence_tap_writer',
            format('SELECT presence_track(%L, %s, %L, %L, %L, %L)',
                   c.topic, c.i, c.principal, c.kind, c.agent, c.worker)) AS t(r boolean);
        SELECT since_ts INTO since FROM tep_presence
         WHERE topic = c.topic AND worker_id = c.worker AND fd = c.i;
        PERFORM * FROM dblink('presence_tap_writer',
            format('SELECT presence_set_status(%L, %s, %L, %L, %s, %L)',
                   c.topic, c.i, c.state, c.note, c.until_ts, c.worker)) AS t(r boolean);
        PERFORM * FROM dblink('presence_tap_writer',
            format('SELECT presence_untrack(%L, %s, %L)', c.topic, c.i, c.worker)) AS t(r boolean);
        INSERT INTO runs VALUES (c.i, since, (presence_snapshot(c.topic) ->> 'seq')::bigint);
    END LOOP;
END
$$;

-- Let the listener's backend pass on what it has, then read it.
DO $$ BEGIN PERFORM * FROM dblink('presence_tap_listener', 'SELECT 1') AS t(x int); END $$;
CREATE TEMP TABLE got AS
SELECT row_number() OVER () AS n, notify_name, be_pid, extra
  FROM dblink_get_notify('presence_tap_listener');

-- What each case's three payloads must be, in order.
CREATE TEMP TABLE want AS
SELECT row_number() OVER (ORDER BY c.i, k.ord) AS n, c.i, k.kind AS dkind, k.ord AS seq,
       char_length('presence:' || c.topic) || ':presence:' || c.topic
       || '{"kind":' || to_json(k.kind)::text
       || ',"topic":' || to_json(c.topic)::text
       || ',"principal":' || to_json(c.principal)::text
       || ',"ekind":' || to_json(c.kind)::text
       || ',"agent_id":' || to_json(c.agent)::text
       || ',"fd":' || c.i
       || ',"since":' || r.since
       || ',"state":' || to_json(CASE k.ord WHEN 1 THEN 'available' ELSE c.state END)::text
       || ',"note":' || to_json(CASE k.ord WHEN 1 THEN '' ELSE c.note END)::text
       || ',"until_ts":' || CASE k.ord WHEN 1 THEN 0 ELSE c.until_ts END
       || ',"seq":' || k.ord
       || ',"worker_id":' || to_json(c.worker)::text
       || ',"epoch":"' || presence_epoch() || '"}' AS payload
  FROM cases c JOIN runs r USING (i),
       (VALUES (1, 'join'), (2, 'status'), (3, 'leave')) AS k(ord, kind);

SELECT is((SELECT count(*) FROM got), (SELECT count(*) FROM want),
          'the listener received one diff per change ('
          || (SELECT count(*) FROM want) || ' for ' || (SELECT count(*) FROM cases) || ' cases)');
SELECT is((SELECT count(*) FROM got WHERE notify_name <> 'tep_broadcast'
              OR be_pid <> (SELECT pid FROM writer)), 0::bigint,
          'all on tep_broadcast, from the writer''s backend');
SELECT is((SELECT count(*) FROM want w LEFT JOIN got g USING (n)
            WHERE g.extra IS DISTINCT FROM w.payload), 0::bigint,
          'every payload is exactly <N>:presence:<topic><json> with to_json''s escaping, in order');

-- The same, read as a client would: split off N, check it, parse the JSON.
CREATE TEMP TABLE parsed AS
SELECT g.n, w.i, w.dkind, w.seq,
       split_part(g.extra, ':', 1)::int AS len,
       substr(g.extra, length(split_part(g.extra, ':', 1)) + 2,
              split_part(g.extra, ':', 1)::int) AS dtopic,
       substr(g.extra, length(split_part(g.extra, ':', 1)) + 2
              + split_part(g.extra, ':', 1)::int)::json AS j
  FROM got g JOIN want w USING (n);
SELECT is((SELECT count(*) FROM parsed p JOIN cases c USING (i)
            WHERE p.dtopic <> 'presence:' || c.topic), 0::bigint,
          'N counts the characters of presence:<topic> (a client that takes N characters gets the topic back)');
SELECT is((SELECT count(*) FROM parsed p JOIN cases c USING (i)
            WHERE p.j ->> 'kind' = p.dkind AND p.j ->> 'topic' = c.topic
              AND p.j ->> 'principal' = c.principal AND p.j ->> 'ekind' = c.kind
              AND p.j ->> 'agent_id' = c.agent AND p.j ->> 'worker_id' = c.worker
              AND (p.j ->> 'fd')::int = c.i AND (p.j ->> 'seq')::int = p.seq
              AND p.j ->> 'note' = CASE p.seq WHEN 1 THEN '' ELSE c.note END
              AND p.j ->> 'state' = CASE p.seq WHEN 1 THEN 'available' ELSE c.state END),
          (SELECT count(*) FROM want),
          'every payload''s JSON parses and reads back each string unchanged');
SELECT is((SELECT string_agg(k, ',') FROM (SELECT json_object_keys(j) k FROM parsed WHERE n = 1) s),
          'kind,topic,principal,ekind,agent_id,fd,since,state,note,until_ts,seq,worker_id,epoch',
          'keys in SPEC''s order, then epoch');
SELECT ok((SELECT bool_and(json_typeof(j -> 'fd') = 'number' AND json_typeof(j -> 'since') = 'number'
                       AND json_typeof(j -> 'until_ts') = 'number' AND json_typeof(j -> 'seq') = 'number'
                       AND (j ->> 'seq') !~ '[^0-9]' AND (j ->> 'since') !~ '[^0-9]')
             FROM parsed),
          'numbers are JSON integers');
SELECT is((SELECT count(*) FROM runs WHERE snap_seq <> 3), 0::bigint,
          'after join, status and leave the snapshot''s seq is the last diff''s (3)');
SELECT ok((SELECT count(*) FROM cases WHERE topic ~ '[^\x01-\x7e]' OR principal ~ '[\x01-\x1f"\\]') > 10,
          'the cases do contain control characters, quotes, backslashes and non-ASCII');

-- Remove what the writer committed, and disconnect.
DO $$
BEGIN
    PERFORM dblink_exec('presence_tap_writer',
        'DELETE FROM tep_presence WHERE worker_id LIKE ''tapw:%'';'
        ' DELETE FROM tep_presence_worker WHERE worker_id LIKE ''tapw:%'';'
        ' DELETE FROM presence_topic_seq WHERE topic LIKE ''tap:%''');
    PERFORM dblink_disconnect('presence_tap_writer');
    PERFORM dblink_disconnect('presence_tap_listener');
END
$$;

SELECT * FROM finish();
ROLLBACK;
