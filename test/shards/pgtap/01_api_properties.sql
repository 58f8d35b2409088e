-- Properties of the SQL API over random inputs, through functions only, so
-- that test/shards/run.sh runs this same file on one server and through
-- presence_proxy (pg_prove on each; both must pass).  The topics are
-- random, so they land on every shard.  No transaction: through the proxy
-- every call commits on its shard (docs/scaling.md), so the file cleans up
-- with presence_worker_stop instead of a rollback.
--
--  * any string within the limits as topic, principal_id, agent_id,
--    worker_id or note: presence_snapshot() is valid JSON, byte for byte
--    what to_json's escaping gives for the rows presence_list_global
--    returns, and reads back every string unchanged;
--  * counts agree with the lists, and each topic's seq counts its diffs.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
SELECT plan(7);
SELECT setseed(0.1313);

CREATE FUNCTION pg_temp.rand_str(max_bytes int) RETURNS text
LANGUAGE plpgsql AS $$
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
    RETURN CASE WHEN s = '' THEN 'x' ELSE s END;
END
$$;

-- 60 random entries: 30 topics, 4 workers, agents and humans, notes.
CREATE TEMP TABLE input AS
SELECT i, 'prop:' || (i % 30) || ':' || pg_temp.rand_str(200) AS topic,
       i AS fd, pg_temp.rand_str(255) AS principal,
       CASE WHEN i % 3 = 0 THEN pg_temp.rand_str(255) ELSE '' END AS agent,
       'prop-w' || (i % 4) || ':' || pg_temp.rand_str(200) AS worker,
       pg_temp.rand_str(1024) AS note
  FROM generate_series(1, 60) i;
-- One topic per i % 30: the later rows reuse the first row's topic.
UPDATE input t SET topic = f.topic
  FROM input f WHERE f.i = (t.i - 1) % 30 + 1 AND t.i > 30;

ALTER TABLE input ADD seq0 bigint;
UPDATE input SET seq0 = (presence_snapshot(topic) ->> 'seq')::bigint;

SELECT is((SELECT count(*) FILTER (WHERE ok) FROM (
              SELECT presence_track(topic, fd, principal,
                                    CASE WHEN agent = '' THEN 'human' ELSE 'agent_for' END,
                                    agent, worker)
                     AND presence_set_status(topic, fd, 'busy', note, 0, worker) AS ok
                FROM input ORDER BY i) x),
          60::bigint, 'every random entry is tracked and given its note');

-- The snapshot a topic must have, from presence_list_global with to_json.
CREATE FUNCTION pg_temp.expected_snapshot(t text) RETURNS text
LANGUAGE sql AS $$
SELECT '{"topic":' || to_json(t)::text
    || ',"seq":' || ((presence_snapshot(t) ->> 'seq'))
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
        || ',"worker_id":' || to_json(p.worker_id)::text
        || ',"meta":' || p.meta::text || '}',
        ',' ORDER BY p.since_ts, p.worker_id, p.fd), '')
    || '],"epoch":' || to_json(presence_snapshot(t) ->> 'epoch')::text || '}'
  FROM presence_list_global(t) p
$$;

SELECT is((SELECT count(*) FROM (SELECT DISTINCT topic FROM input) t
            WHERE presence_snapshot(topic)::text IS DISTINCT FROM pg_temp.expected_snapshot(topic)),
          0::bigint, 'every snapshot is to_json''s escaping of presence_list_global');

SELECT is((SELECT count(*) FROM input n
            WHERE NOT EXISTS (
              SELECT 1 FROM json_array_elements(presence_snapshot(n.topic) -> 'entries') e
               WHERE e ->> 'principal' = n.principal AND e ->> 'agent_id' = n.agent
                 AND e ->> 'worker_id' = n.worker AND e ->> 'note' = n.note
                 AND (e ->> 'fd')::int = n.fd AND e ->> 'topic' = n.topic)),
          0::bigint, 'every string reads back unchanged from the snapshot');

SELECT is((SELECT count(*) FROM (SELECT DISTINCT topic FROM input) t
            WHERE presence_count_global(topic) <> (SELECT count(*) FROM presence_list_global(topic))
               OR presence_count_humans_global(topic) + presence_count_agents_global(topic)
                  <> presence_count_global(topic)),
          0::bigint, 'the global counts agree with presence_list_global');

SELECT is((SELECT count(*) FROM input n
            WHERE presence_count(n.topic, n.worker)
                  <> (SELECT count(*) FROM input m WHERE m.topic = n.topic AND m.worker = n.worker)
               OR (presence_find_entry(n.topic, n.fd, n.worker)).status_note IS DISTINCT FROM n.note),
          0::bigint, 'per worker: presence_count and presence_find_entry agree with the input');

-- A join and a status diff per entry: the seq of each topic counts both.
SELECT is((SELECT count(*) FROM (SELECT topic, min(seq0) AS seq0, count(*) AS n FROM input GROUP BY topic) t
            WHERE (presence_snapshot(topic) ->> 'seq')::bigint <> seq0 + 2 * n),
          0::bigint, 'each topic''s seq is two diffs per entry');

SELECT is((SELECT sum(presence_worker_stop(worker)) FROM (SELECT DISTINCT worker FROM input) w),
          60::bigint, 'presence_worker_stop drops the 60 entries, wherever they are');

SELECT * FROM finish();
