--
-- The SQL API through presence_proxy: run by test/shards/run.sh against a
-- one-server presence database and against a proxy database over three
-- shards; the two outputs must be the same.  Only functions are called (a
-- proxy database has no presence tables); each diff is observed through
-- the seq of presence_snapshot.  Left out here, and tested on their own
-- because they differ by design (docs/scaling.md, "What differs"):
-- connection-bound workers, transactions spanning calls, and the prefix
-- PL/Proxy puts before a shard's error message (try() below strips it;
-- the SQLSTATE is the shard's).
--
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.seq(t text) RETURNS bigint LANGUAGE sql AS
$$ SELECT (presence_snapshot(t) ->> 'seq')::bigint $$;
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': '
        || regexp_replace(SQLERRM, '^\S+\(\d+\): \[[^]]*\] REMOTE ERROR: ', '');
END
$$;

-- Topics spread over the shards (each on the shard of its hash).
CREATE TEMP TABLE topics AS
  SELECT 'room:' || i AS topic FROM generate_series(1, 12) i;

SELECT presence_worker_start('gw-1', '1 hour') AS gw1,
       presence_worker_start('gw-2', '1 hour') AS gw2;

SELECT presence_diff_topic('room:lobby'), presence_diff_topic('salle:café');
SELECT presence_channel('room:lobby'), presence_channel(repeat('long', 20));

-- track: true when new; again false, left as is.
SELECT topic, presence_track(topic, 5, 'user:42', worker_id => 'gw-1') AS new
  FROM topics ORDER BY topic;
SELECT topic, presence_track(topic, 5, 'user:99', 'agent_for', 'bot',
                             worker_id => 'gw-1') AS again
  FROM topics ORDER BY topic;
SELECT presence_track('room:1', 5, 'user:7', worker_id => 'gw-2'),
       presence_track('room:1', 9, 'user:42', 'agent_for', 'summarizer-bot',
                      'gw-1'),
       presence_track('room:2', 3, 'user:42', kind => 'human',
                      worker_id => 'gw-1');
-- The session's worker: presence_worker_start made it gw-2.
SELECT presence_track('room:3', 1, 'user:1');
SELECT topic, pg_temp.seq(topic) FROM topics ORDER BY topic;

-- find_entry: the row, or NULL.
SELECT worker_id, topic, fd, principal_id, kind, agent_id, status_state,
       status_note, status_until
  FROM presence_find_entry('room:1', 9, 'gw-1');
SELECT presence_find_entry('room:1', 9, 'gw-2') IS NULL AS not_found,
       presence_find_entry('nowhere', 5, 'gw-1') IS NULL AS not_found;
SELECT (presence_find_entry('room:1', 5)).principal_id AS session_worker;

-- list, list_global and the six counts.
SELECT worker_id, fd, principal_id, kind, agent_id
  FROM presence_list('room:1', 'gw-1') ORDER BY fd;
SELECT worker_id, fd, principal_id
  FROM presence_list_global('room:1') ORDER BY worker_id, fd;
SELECT count(*) FROM presence_list_global('nowhere');
SELECT topic, presence_count(topic, 'gw-1') AS all_gw1,
       presence_count_humans(topic, 'gw-1') AS humans_gw1,
       presence_count_agents(topic, 'gw-1') AS agents_gw1,
       presence_count(topic) AS all_session,
       presence_count_global(topic) AS all_global,
       presence_count_humans_global(topic) AS humans_global,
       presence_count_agents_global(topic) AS agents_global
  FROM topics ORDER BY topic;
SET presence.worker_id = 'gw-1';
SELECT fd, principal_id FROM presence_list('room:1') ORDER BY fd;
SET presence.worker_id = 'gw-2';

-- set_status / clear_status: a diff each time; false without the entry.
SELECT presence_set_status('room:1', 5, 'busy', 'in a call', 4102444800,
                           'gw-1') AS set,
       presence_set_status('room:1', 5, 'busy', 'in a call', 4102444800,
                           'gw-1') AS same_again,
       presence_set_status('room:1', 77, 'busy', 'x', 0, 'gw-1') AS no_entry;
SELECT status_state, status_note, status_until
  FROM presence_find_entry('room:1', 5, 'gw-1');
SELECT presence_set_status('room:1', 9, 'busy',
                           E'say "hi" \\ back\nline2\t\u0001 🦊 café', 0,
                           'gw-1');
SELECT status_note = E'say "hi" \\ back\nline2\t\u0001 🦊 café' AS note_kept
  FROM presence_find_entry('room:1', 9, 'gw-1');
SELECT presence_clear_status('room:1', 9, 'gw-1'),
       presence_clear_status('room:1', 10, 'gw-1') AS no_entry;
SELECT pg_temp.seq('room:1');
-- until_ts as a timestamptz, an interval, or text (an untyped parameter);
-- more than 100 years ahead is refused in every form.
SELECT presence_set_status('room:1', 9, 'busy', 'at', timestamptz '2100-01-01 00:00:00.5+00', 'gw-1') AS at;
SELECT (presence_find_entry('room:1', 9, 'gw-1')).status_until AS at_until;
SELECT presence_set_status('room:1', 9, 'busy', 'for', interval '1 hour', 'gw-1') AS for;
SELECT (presence_find_entry('room:1', 9, 'gw-1')).status_until
         - extract(epoch FROM now())::bigint BETWEEN 3598 AND 3602 AS for_until_ok;
SELECT presence_set_status('room:1', 9, 'busy', 'text', '4102444800'::text, 'gw-1') AS text;
SELECT (presence_find_entry('room:1', 9, 'gw-1')).status_until AS text_until;
SELECT pg_temp.try($$SELECT presence_set_status('room:1', 9, 'busy', 'ms', 4102444800000, 'gw-1')$$) AS ms,
       pg_temp.try($$SELECT presence_set_status('room:1', 9, 'busy', 'far', now() + interval '101 years', 'gw-1')$$) AS far,
       pg_temp.try($$SELECT presence_set_status('room:1', 9, 'busy', 'long', interval '101 years', 'gw-1')$$) AS long,
       pg_temp.try($$SELECT presence_set_status('room:1', 9, 'busy', 'ms', '4102444800000', 'gw-1')$$) AS ms_text;
SELECT presence_clear_status('room:1', 9, 'gw-1');
SELECT pg_temp.seq('room:1');

-- sweep_expired_status: every shard's expired statuses.
SELECT topic, presence_set_status(topic, 5, 'busy', 'expired', 1, 'gw-1')
  FROM topics WHERE topic IN ('room:4', 'room:5', 'room:6', 'room:7')
  ORDER BY topic;
SELECT presence_set_status('room:8', 5, 'busy', 'future', 4102444800, 'gw-1');
SELECT presence_sweep_expired_status() AS reset,
       presence_sweep_expired_status() AS reset_again;
SELECT t.topic, e.status_state, e.status_note, e.status_until
  FROM topics t, presence_find_entry(t.topic, 5, 'gw-1') e ORDER BY t.topic;

-- snapshot: the topic's seq and entries (since left out, and so the
-- entries are sorted here: their order is since's).
SELECT s -> 'topic' AS topic, s -> 'seq' AS seq,
       (SELECT json_agg(e::jsonb - 'since' ORDER BY e ->> 'worker_id', (e ->> 'fd')::int)
          FROM json_array_elements(s -> 'entries') e) AS entries
  FROM presence_snapshot('room:2') s;
-- (the epoch is each server's own: checked in the snapshot's shape only)
SELECT s::jsonb - 'epoch' AS snapshot, s ->> 'epoch' ~ '^[0-9a-f]{16}$' AS has_epoch
  FROM (VALUES (presence_snapshot('nowhere')), (presence_snapshot(E'q"uote\\'))) v(s);

-- untrack; untrack_by_fd over every topic (so every shard); clear.
SELECT presence_untrack('room:2', 3, 'gw-1'),
       presence_untrack('room:2', 3, 'gw-1') AS again;
SELECT presence_untrack_by_fd(5, 'gw-1') AS by_fd,
       presence_untrack_by_fd(5, 'gw-1') AS again,
       presence_untrack_by_fd(5, 'no-such-worker') AS unknown_worker;
SELECT topic, presence_count_global(topic), pg_temp.seq(topic)
  FROM topics ORDER BY topic;
SELECT presence_clear('gw-1') AS cleared, presence_clear('gw-1') AS again;

-- Workers: heartbeat, stop, prune.
SELECT presence_heartbeat('gw-1') AS hb, presence_heartbeat() AS hb_session;
SELECT topic, presence_track(topic, 1, 'user:1', worker_id => 'gw-1')
  FROM topics ORDER BY topic;
SELECT presence_worker_stop('gw-1') AS stopped;
SELECT pg_temp.try($$SELECT presence_heartbeat('gw-1')$$);
SELECT pg_temp.try($$SELECT presence_worker_stop('gw-1')$$);
-- A restarted worker reusing its id drops what it had.
SELECT topic, presence_track(topic, 2, 'user:2', worker_id => 'gw-3')
  FROM topics ORDER BY topic;
SELECT presence_worker_start('gw-3', '1 hour');
SELECT topic, presence_count_global(topic) FROM topics ORDER BY topic;
-- A worker whose lease ran out is pruned on every shard.
SELECT presence_worker_start('gw-4', '1 second');
SELECT topic, presence_track(topic, 4, 'user:4', worker_id => 'gw-4')
  FROM topics ORDER BY topic;
SELECT pg_sleep(1.5);
SELECT presence_heartbeat('gw-4') AS lapsed;
SELECT presence_prune_dead_workers() AS pruned;
SELECT pg_temp.try($$SELECT presence_heartbeat('gw-4')$$);
SELECT topic, presence_count_global(topic), pg_temp.seq(topic)
  FROM topics ORDER BY topic;
SELECT presence_worker_stop() AS session_stopped;

-- 1.1's meta, principals and last seen (history is off: presence.history
-- is the shards' setting, not the proxy session's).
SELECT presence_track('room:meta', 1, 'user:m', 'human', '', 'gw-2', '{"name": "Ann"}') AS tracked,
       presence_track('room:meta', 2, 'user:m', 'agent_for', 'bot', 'gw-2') AS agent,
       presence_set_meta('room:meta', 2, '{"name": "Bot", "n": [1, null]}', 'gw-2') AS meta_set,
       presence_set_meta('room:meta', 99, '{}', 'gw-2') AS no_entry;
SELECT fd, meta FROM presence_list_global('room:meta') ORDER BY fd;
SELECT principal_id, humans, agents, connections, state, meta
  FROM presence_principals('room:meta');
SELECT presence_count_principals('room:meta') AS principals,
       presence_last_seen('user:m', 'room:meta') >= 0 AS seen_here,
       presence_last_seen('user:m') >= 0 AS seen_anywhere,
       presence_last_seen('user:never') AS never,
       presence_last_seen('user:m', 'room:other') AS not_there;
SELECT count(*) AS history_rows FROM presence_history('room:meta', 0, 4102444800);
SELECT presence_untrack('room:meta', 1, 'gw-2'), presence_untrack('room:meta', 2, 'gw-2');

-- 1.1's many-calls (issue 23): entries and topics spread over every
-- shard, answered in the caller's order; a snapshot's rows; idle topics'
-- removal summed over the shards.
SELECT presence_track_many((SELECT jsonb_agg(jsonb_build_object(
         'topic', topic, 'fd', 70, 'principal_id', 'user:many'))
       FROM topics), 'gw-1') AS tracked,
       presence_track_many((SELECT jsonb_agg(jsonb_build_object(
         'topic', topic, 'fd', f, 'principal_id', 'user:many', 'meta', jsonb_build_object('f', f)))
       FROM topics, generate_series(70, 71) f), 'gw-1') AS tracked_again;
SELECT i, s ->> 'topic' AS topic, (s ->> 'seq')::bigint = pg_temp.seq(s ->> 'topic') AS seq_ok,
       (SELECT string_agg(e ->> 'fd', ',' ORDER BY (e ->> 'fd')::int) FROM json_array_elements(s -> 'entries') e) AS fds
  FROM presence_snapshot_many(ARRAY(SELECT topic FROM topics ORDER BY topic DESC) || '{nowhere,room:1}')
       WITH ORDINALITY AS m(s, i)
 ORDER BY i;
SELECT seq = pg_temp.seq('room:3') AS seq_ok, entry IS NULL AS header, entry ->> 'fd' AS fd
  FROM presence_snapshot_rows('room:3') ORDER BY header DESC, fd;
SELECT presence_set_status_many((SELECT jsonb_agg(jsonb_build_object(
         'topic', topic, 'fd', f, 'state', 'busy', 'note', topic))
       FROM topics, generate_series(70, 72) f), 'gw-1') AS statuses_found;
SELECT count(*) FILTER (WHERE e.status_state = 'busy' AND e.status_note = t.topic) AS busy
  FROM topics t, presence_list_global(t.topic) e;
SELECT presence_untrack(topic, 70, 'gw-1'), presence_untrack(topic, 71, 'gw-1') FROM topics WHERE topic IN ('room:1', 'room:2', 'room:3', 'room:4');
SELECT presence_remove_idle_topics('1 hour') AS none_yet;

-- Bad input: the shard's SQLSTATE and message (a many-call's index is the
-- caller's; its good elements here exist already, so that no shard keeps
-- a part: through the proxy each shard's part commits on its own).
SELECT q, pg_temp.try(q) FROM (VALUES
  ($$SELECT presence_track(NULL, 1, 'p', worker_id => 'gw-2')$$),
  ($$SELECT presence_track('', 1, 'p', worker_id => 'gw-2')$$),
  ($$SELECT presence_track('t', -1, 'p', worker_id => 'gw-2')$$),
  ($$SELECT presence_track('t', 1, NULL, worker_id => 'gw-2')$$),
  ($$SELECT presence_track('t', 1, 'p', 'robot', worker_id => 'gw-2')$$),
  ($$SELECT presence_track('t', 1, 'p', 'agent_for', worker_id => 'gw-2')$$),
  ($$SELECT presence_track(repeat('x', 256), 1, 'p', worker_id => 'gw-2')$$),
  ($$SELECT presence_set_status('t', 1, 'away', worker_id => 'gw-2')$$),
  ($$SELECT presence_set_status('t', 1, 'busy', repeat('n', 1025), 0, 'gw-2')$$),
  ($$SELECT presence_set_status('t', 1, 'busy', '', -1, 'gw-2')$$),
  ($$SELECT presence_untrack_by_fd(-1, 'gw-2')::text$$),
  ($$SELECT presence_snapshot(NULL)::text$$),
  ($$SELECT presence_count_global('')::text$$),
  ($$SELECT presence_worker_start('', '1 hour')$$),
  ($$SELECT presence_worker_start('gw-9', interval '0')$$),
  ($$SELECT presence_worker_start('gw-9', interval '100000000 years')$$),
  ($$SELECT presence_heartbeat('no-such-worker')::text$$),
  ($$SELECT presence_heartbeat('')::text$$),
  ($$SELECT presence_heartbeat(repeat('x', 256))::text$$),
  ($$SELECT presence_worker_stop('')::text$$),
  ($$SELECT presence_untrack_by_fd(1, '')::text$$),
  ($$SELECT presence_clear('')::text$$),
  ($$SELECT presence_worker_stop('no-such-worker')::text$$),
  ($$SELECT presence_set_meta('t', 1, '[1]', 'gw-2')::text$$),
  ($$SELECT presence_track('t', 1, 'p', 'human', '', 'gw-2', '"x"')::text$$),
  ($$SELECT presence_history('t', 10, 5)::text$$),
  ($$SELECT presence_last_seen(NULL)::text$$),
  ($$SELECT presence_principals('')::text$$),
  ($$SELECT presence_track_many(NULL, 'gw-2')::text$$),
  ($$SELECT presence_track_many('{}', 'gw-2')::text$$),
  ($$SELECT presence_track_many((SELECT jsonb_agg(jsonb_build_object('topic', topic, 'fd', 70, 'principal_id', 'p')) FROM topics WHERE topic NOT IN ('room:1', 'room:2', 'room:3', 'room:4')) || '[{"topic": "room:5", "fd": 1, "principal_id": "p", "kind": "robot"}]', 'gw-1')::text$$),
  ($$SELECT presence_track_many('[{"topic": "room:7", "fd": 70, "principal_id": "p"}, {"topic": "room:8", "fd": -1, "principal_id": "p"}]', 'gw-1')::text$$),
  ($$SELECT presence_set_status_many('[{"topic": "room:7", "fd": 99, "state": "busy"}, {"topic": "room:8", "fd": 70, "state": "away"}]', 'gw-1')::text$$),
  ($$SELECT count(*)::text FROM presence_snapshot_many(ARRAY['room:1', 'room:2', NULL])$$),
  ($$SELECT count(*)::text FROM presence_snapshot_many(NULL)$$),
  ($$SELECT count(*)::text FROM presence_snapshot_rows('')$$),
  ($$SELECT presence_remove_idle_topics('-1 second')::text$$)
) AS t(q);

SELECT presence_worker_stop('gw-2');
SELECT presence_prune_dead_workers() AS pruned;
SELECT topic, presence_count_global(topic) FROM topics ORDER BY topic;
