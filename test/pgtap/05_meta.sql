-- meta round-trips: for random JSON objects within the limit (nested
-- objects and arrays, strings with quotes, backslashes, control characters
-- and non-ASCII, numbers, booleans, nulls), the join diff of
-- presence_track(meta => m) and the status diff of presence_set_meta(m2)
-- carry exactly m and m2 as "meta", the last key before "epoch"; the snapshot and the
-- row hold m2.  Objects over the limit and non-objects are 22023 with
-- nothing changed.  A second connection (dblink) listens, a third writes.
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
SELECT plan(8);
SELECT setseed(0.2024);

CREATE FUNCTION pg_temp.rand_str(max_chars int) RETURNS text
LANGUAGE sql VOLATILE AS $$
SELECT string_agg((ARRAY['a', 'Z', '0', ' ', '"', '\', '/', '''', ':', '{', '}',
        E'\n', E'\t', chr(1), chr(31), 'é', '€', '🦊', '中', '\u0000'])
        [1 + floor(random() * 20)::int], '')
  FROM generate_series(1, 1 + floor(random() * max_chars)::int)
$$;

-- A random JSON value, at most `depth` levels of nesting.
CREATE FUNCTION pg_temp.rand_json(depth int) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r float8 := random();
BEGIN
    IF depth = 0 OR r < 0.4 THEN
        RETURN (ARRAY[to_jsonb(pg_temp.rand_str(12)), to_jsonb((random() * 1e6)::int - 5e5),
                      to_jsonb(random() * 1e3), 'true'::jsonb, 'false'::jsonb, 'null'::jsonb])
               [1 + floor(random() * 6)::int];
    ELSIF r < 0.6 THEN
        RETURN (SELECT coalesce(jsonb_agg(pg_temp.rand_json(depth - 1)), '[]')
                  FROM generate_series(1, floor(random() * 4)::int));
    END IF;
    RETURN pg_temp.rand_object(depth - 1);
END
$$;

CREATE FUNCTION pg_temp.rand_object(depth int) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
SELECT coalesce(jsonb_object_agg(pg_temp.rand_str(8), pg_temp.rand_json(depth)), '{}')
  FROM generate_series(1, floor(random() * 6)::int)
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
    PERFORM dblink_exec('presence_tap_writer',
        'DELETE FROM tep_presence WHERE worker_id = ''tapm'';'
        ' DELETE FROM tep_presence_worker WHERE worker_id = ''tapm'';'
        ' DELETE FROM presence_topic_seq WHERE topic LIKE ''tapm:%''');
END
$$;

-- Cases: two objects each, within the limit (as jsonb writes them).
CREATE TEMP TABLE cases AS
SELECT i, 'tapm:' || i AS topic, pg_temp.rand_object(3) AS m1, pg_temp.rand_object(3) AS m2
  FROM generate_series(1, 150) i;
DELETE FROM cases WHERE octet_length(m1::text) > 2048 OR octet_length(m2::text) > 2048;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM cases ORDER BY i LOOP
        PERFORM * FROM dblink('presence_tap_writer',
            format('SELECT presence_track(%L, %s, ''u'', worker_id => ''tapm'', meta => %L)',
                   c.topic, c.i, c.m1)) AS t(r boolean);
        PERFORM * FROM dblink('presence_tap_writer',
            format('SELECT presence_set_meta(%L, %s, %L, ''tapm'')', c.topic, c.i, c.m2)) AS t(r boolean);
    END LOOP;
END
$$;

DO $$ BEGIN PERFORM * FROM dblink('presence_tap_listener', 'SELECT 1') AS t(x int); END $$;
CREATE TEMP TABLE got AS
SELECT substr(extra, length(split_part(extra, ':', 1)) + 2
              + split_part(extra, ':', 1)::int)::json AS j
  FROM dblink_get_notify('presence_tap_listener');

SELECT is((SELECT count(*) FROM got), 2 * (SELECT count(*) FROM cases),
          'a join and a status diff per case (' || (SELECT count(*) FROM cases) || ' cases)');
SELECT is((SELECT count(*) FROM cases c JOIN got g
             ON g.j ->> 'topic' = c.topic AND g.j ->> 'kind' = 'join'
          WHERE (g.j -> 'meta')::jsonb = c.m1), (SELECT count(*) FROM cases),
          'every join diff carries presence_track''s meta unchanged');
SELECT is((SELECT count(*) FROM cases c JOIN got g
             ON g.j ->> 'topic' = c.topic AND g.j ->> 'kind' = 'status'
          WHERE (g.j -> 'meta')::jsonb = c.m2 AND (g.j ->> 'seq')::int = 2
            AND g.j ->> 'state' = 'available'), (SELECT count(*) FROM cases),
          'every status diff of presence_set_meta carries the new meta, seq 2, the status unchanged');
SELECT is((SELECT count(*) FROM got g
          WHERE (SELECT array_agg(k) FROM json_object_keys(g.j) k) <>
                '{kind,topic,principal,ekind,agent_id,fd,since,state,note,until_ts,seq,worker_id,meta,epoch}'),
          0::bigint, 'meta follows worker_id in every diff, the epoch last');
SELECT is((SELECT count(*) FROM cases c
          WHERE (presence_snapshot(c.topic) -> 'entries' -> 0 -> 'meta')::jsonb <> c.m2
             OR (SELECT meta FROM tep_presence WHERE topic = c.topic) <> c.m2),
          0::bigint, 'the snapshot and the row hold the new meta');
SELECT ok((SELECT count(*) FROM cases WHERE m1::text ~ '[\\"]' AND jsonb_typeof(m1) = 'object'
              AND m1::text ~ '[{[].*[{[]') > 10,
          'the cases do contain nested values, quotes and backslashes');

-- Over the limit, or not an object: 22023, nothing changed.
SELECT throws_ok(format('SELECT presence_set_meta(%L, 1, %L, ''tapm'')', 'tapm:1',
                        jsonb_build_object('k', repeat('x', 2100))),
                 '22023', 'meta must be at most 2048 bytes as JSON',
                 'meta over 2048 bytes is 22023');
SELECT is((SELECT meta FROM tep_presence WHERE topic = 'tapm:1'), (SELECT m2 FROM cases WHERE i = 1),
          'and the entry kept its meta');

DO $$
BEGIN
    PERFORM dblink_exec('presence_tap_writer',
        'DELETE FROM tep_presence WHERE worker_id = ''tapm'';'
        ' DELETE FROM tep_presence_worker WHERE worker_id = ''tapm'';'
        ' DELETE FROM presence_topic_seq WHERE topic LIKE ''tapm:%''');
    PERFORM dblink_disconnect('presence_tap_writer');
    PERFORM dblink_disconnect('presence_tap_listener');
END
$$;

SELECT * FROM finish();
ROLLBACK;
