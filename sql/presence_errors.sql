--
-- presence_errors: every bad input of SPEC's "Bad input", for every
-- function that takes it: SQLSTATE 22004 (NULL) or 22023 (bad value), a
-- message naming the argument, and nothing changed (rows, workers, seqs,
-- the session's worker).  "Nothing emitted" is checked here through the
-- seqs (every diff advances its topic's seq); the isolation spec
-- bad_input_silent checks it on the wire.
--
SET client_min_messages = warning;

-- Start from empty tables (other files may leave rows behind).
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

-- Runs a statement; returns 'ok: <result>' or '<SQLSTATE>: <message>'.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- Fixture: two entries of gw-1 in "room" (a human, busy; an agent) and
-- a Tep heartbeat worker gw-2 with an entry in "hall".
BEGIN;
SELECT presence_track('room', 1, 'user:1', worker_id => 'gw-1');
SELECT presence_track('room', 2, 'user:1', 'agent_for', 'bot', 'gw-1');
SELECT presence_set_status('room', 1, 'busy', 'note', 4102444800, 'gw-1');
SELECT presence_track('hall', 1, 'user:2', worker_id => 'gw-2');
COMMIT;
SET presence.worker_id = 'gw-1';

CREATE TEMP TABLE before_entries AS SELECT * FROM tep_presence;
CREATE TEMP TABLE before_workers AS SELECT * FROM tep_presence_worker;
CREATE TEMP TABLE before_seqs AS SELECT * FROM presence_topic_seq;
SELECT topic, seq FROM before_seqs ORDER BY topic;


CREATE TEMP TABLE cases (n serial, q text);
INSERT INTO cases (q) VALUES
-- presence_track: topic
  ($$SELECT presence_track(NULL, 3, 'p')$$),
  ($$SELECT presence_track('', 3, 'p')$$),
  ($$SELECT presence_track(repeat('x', 256), 3, 'p')$$),
  ($$SELECT presence_track(repeat('é', 128), 3, 'p')$$),
-- fd
  ($$SELECT presence_track('room', NULL, 'p')$$),
  ($$SELECT presence_track('room', -1, 'p')$$),
-- principal_id
  ($$SELECT presence_track('room', 3, NULL)$$),
  ($$SELECT presence_track('room', 3, '')$$),
  ($$SELECT presence_track('room', 3, repeat('x', 256))$$),
-- kind
  ($$SELECT presence_track('room', 3, 'p', NULL)$$),
  ($$SELECT presence_track('room', 3, 'p', '')$$),
  ($$SELECT presence_track('room', 3, 'p', 'robot')$$),
  ($$SELECT presence_track('room', 3, 'p', 'Human')$$),
  ($$SELECT presence_track('room', 3, 'p', 'agent')$$),
-- agent_id
  ($$SELECT presence_track('room', 3, 'p', 'human', NULL)$$),
  ($$SELECT presence_track('room', 3, 'p', 'agent_for', repeat('x', 256))$$),
  ($$SELECT presence_track('room', 3, 'p', 'agent_for', '')$$),
  ($$SELECT presence_track('room', 3, 'p', 'agent_for')$$),
  ($$SELECT presence_track('room', 3, 'p', 'human', 'bot')$$),
-- worker_id
  ($$SELECT presence_track('room', 3, 'p', worker_id => '')$$),
  ($$SELECT presence_track('room', 3, 'p', worker_id => repeat('x', 256))$$),
-- presence_untrack
  ($$SELECT presence_untrack(NULL, 1)$$),
  ($$SELECT presence_untrack('', 1)$$),
  ($$SELECT presence_untrack(repeat('x', 256), 1)$$),
  ($$SELECT presence_untrack('room', NULL)$$),
  ($$SELECT presence_untrack('room', -1)$$),
  ($$SELECT presence_untrack('room', 1, '')$$),
  ($$SELECT presence_untrack('room', 1, repeat('x', 256))$$),
-- presence_untrack_by_fd
  ($$SELECT presence_untrack_by_fd(NULL)$$),
  ($$SELECT presence_untrack_by_fd(-1)$$),
  ($$SELECT presence_untrack_by_fd(-2147483648)$$),
  ($$SELECT presence_untrack_by_fd(1, '')$$),
  ($$SELECT presence_untrack_by_fd(1, repeat('x', 256))$$),
-- presence_list / presence_list_global
  ($$SELECT count(*) FROM presence_list(NULL)$$),
  ($$SELECT count(*) FROM presence_list('')$$),
  ($$SELECT count(*) FROM presence_list(repeat('x', 256))$$),
  ($$SELECT count(*) FROM presence_list('room', '')$$),
  ($$SELECT count(*) FROM presence_list('room', repeat('x', 256))$$),
  ($$SELECT count(*) FROM presence_list_global(NULL)$$),
  ($$SELECT count(*) FROM presence_list_global('')$$),
  ($$SELECT count(*) FROM presence_list_global(repeat('x', 256))$$),
-- the six counts
  ($$SELECT presence_count(NULL)$$),
  ($$SELECT presence_count('')$$),
  ($$SELECT presence_count(repeat('x', 256))$$),
  ($$SELECT presence_count('room', '')$$),
  ($$SELECT presence_count_humans(NULL)$$),
  ($$SELECT presence_count_humans('')$$),
  ($$SELECT presence_count_humans(repeat('x', 256))$$),
  ($$SELECT presence_count_humans('room', '')$$),
  ($$SELECT presence_count_agents(NULL)$$),
  ($$SELECT presence_count_agents('')$$),
  ($$SELECT presence_count_agents(repeat('x', 256))$$),
  ($$SELECT presence_count_agents('room', repeat('x', 256))$$),
  ($$SELECT presence_count_global(NULL)$$),
  ($$SELECT presence_count_global('')$$),
  ($$SELECT presence_count_global(repeat('x', 256))$$),
  ($$SELECT presence_count_humans_global(NULL)$$),
  ($$SELECT presence_count_humans_global('')$$),
  ($$SELECT presence_count_humans_global(repeat('x', 256))$$),
  ($$SELECT presence_count_agents_global(NULL)$$),
  ($$SELECT presence_count_agents_global('')$$),
  ($$SELECT presence_count_agents_global(repeat('x', 256))$$),
-- presence_set_status
  ($$SELECT presence_set_status(NULL, 1, 'busy')$$),
  ($$SELECT presence_set_status('', 1, 'busy')$$),
  ($$SELECT presence_set_status(repeat('x', 256), 1, 'busy')$$),
  ($$SELECT presence_set_status('room', NULL, 'busy')$$),
  ($$SELECT presence_set_status('room', -1, 'busy')$$),
  ($$SELECT presence_set_status('room', 1, NULL)$$),
  ($$SELECT presence_set_status('room', 1, '')$$),
  ($$SELECT presence_set_status('room', 1, 'away')$$),
  ($$SELECT presence_set_status('room', 1, 'BUSY')$$),
  ($$SELECT presence_set_status('room', 1, repeat('x', 256))$$),
  ($$SELECT presence_set_status('room', 1, 'busy', NULL)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', repeat('x', 1025))$$),
  ($$SELECT presence_set_status('room', 1, 'busy', repeat('é', 513))$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', NULL)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', -1)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', 0, '')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', 0, repeat('x', 256))$$),
-- until_ts: at most 100 years ahead (milliseconds are refused), in each form
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', (extract(epoch FROM now()) * 1000)::bigint)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', 9223372036854775807)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', extract(epoch FROM now())::bigint + 3155760001)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', '1796000000000')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', '-1'::text)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', 'soon'::text)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', NULL::text)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', now() + interval '101 years')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', 'infinity'::timestamptz)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', '-infinity'::timestamptz)$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', timestamptz '1970-01-01 00:00:00+00')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', NULL::timestamptz, 'gw-1')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', interval '0')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', interval '-1 second')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', interval '100 years 1 day')$$),
  ($$SELECT presence_set_status('room', 1, 'busy', 'n', NULL::interval)$$),
-- presence_clear_status
  ($$SELECT presence_clear_status(NULL, 1)$$),
  ($$SELECT presence_clear_status('', 1)$$),
  ($$SELECT presence_clear_status(repeat('x', 256), 1)$$),
  ($$SELECT presence_clear_status('room', NULL)$$),
  ($$SELECT presence_clear_status('room', -1)$$),
  ($$SELECT presence_clear_status('room', 1, '')$$),
-- presence_find_entry
  ($$SELECT presence_find_entry(NULL, 1)::text$$),
  ($$SELECT presence_find_entry('', 1)::text$$),
  ($$SELECT presence_find_entry(repeat('x', 256), 1)::text$$),
  ($$SELECT presence_find_entry('room', NULL)::text$$),
  ($$SELECT presence_find_entry('room', -1)::text$$),
  ($$SELECT presence_find_entry('room', 1, '')::text$$),
-- presence_clear
  ($$SELECT presence_clear('')$$),
  ($$SELECT presence_clear(repeat('x', 256))$$),
-- presence_diff_topic / presence_snapshot
  ($$SELECT presence_diff_topic(NULL)$$),
  ($$SELECT presence_diff_topic('')$$),
  ($$SELECT presence_diff_topic(repeat('x', 256))$$),
  ($$SELECT presence_snapshot(NULL)::text$$),
  ($$SELECT presence_snapshot('')::text$$),
  ($$SELECT presence_snapshot(repeat('x', 256))::text$$),
-- workers
  ($$SELECT presence_worker_start('')$$),
  ($$SELECT presence_worker_start(repeat('x', 256))$$),
  ($$SELECT presence_worker_start('gw-1', interval '0')$$),
  ($$SELECT presence_worker_start('gw-1', interval '-5 seconds')$$),
  ($$SELECT presence_worker_start('gw-9', interval '-1 day')$$),
  ($$SELECT presence_worker_start('gw-9', interval '1 month -31 days')$$),
  ($$SELECT presence_worker_start('gw-9', interval '100000000 years')$$),
  ($$SELECT presence_worker_start('gw-9', NULL, NULL)$$),
  ($$SELECT presence_heartbeat('')$$),
  ($$SELECT presence_heartbeat(repeat('x', 256))$$),
  ($$SELECT presence_heartbeat('no-such-worker')$$),
  ($$SELECT presence_worker_stop('')$$),
  ($$SELECT presence_worker_stop(repeat('x', 256))$$),
  ($$SELECT presence_worker_stop('no-such-worker')$$),
-- 1.1: meta (presence_track, presence_set_meta, the CHECK behind Tep's writes)
  ($$SELECT presence_track('room', 3, 'p', meta => NULL)$$),
  ($$SELECT presence_track('room', 3, 'p', meta => '[1, 2]')$$),
  ($$SELECT presence_track('room', 3, 'p', meta => '"name"')$$),
  ($$SELECT presence_track('room', 3, 'p', meta => 'null')$$),
  ($$SELECT presence_track('room', 3, 'p', meta => jsonb_build_object('k', repeat('x', 2041)))$$),
  ($$SELECT presence_set_meta(NULL, 1, '{}')$$),
  ($$SELECT presence_set_meta('', 1, '{}')$$),
  ($$SELECT presence_set_meta(repeat('x', 256), 1, '{}')$$),
  ($$SELECT presence_set_meta('room', NULL, '{}')$$),
  ($$SELECT presence_set_meta('room', -1, '{}')$$),
  ($$SELECT presence_set_meta('room', 1, NULL)$$),
  ($$SELECT presence_set_meta('room', 1, '[]')$$),
  ($$SELECT presence_set_meta('room', 1, '3')$$),
  ($$SELECT presence_set_meta('room', 1, jsonb_build_object('k', repeat('é', 1021)))$$),
  ($$SELECT presence_set_meta('room', 1, '{}', '')$$),
  ($$SELECT presence_set_meta('room', 1, '{}', repeat('x', 256))$$),
  ($$UPDATE tep_presence SET meta = '[]' WHERE topic = 'room' RETURNING 1$$),
  ($$UPDATE tep_presence SET meta = NULL WHERE topic = 'room' RETURNING 1$$),
-- 1.1: history, last seen, principals
  ($$SELECT count(*) FROM presence_history(NULL, 0, 1)$$),
  ($$SELECT count(*) FROM presence_history('', 0, 1)$$),
  ($$SELECT count(*) FROM presence_history(repeat('x', 256), 0, 1)$$),
  ($$SELECT count(*) FROM presence_history('room', NULL, 1)$$),
  ($$SELECT count(*) FROM presence_history('room', -1, 1)$$),
  ($$SELECT count(*) FROM presence_history('room', 0, NULL)$$),
  ($$SELECT count(*) FROM presence_history('room', 0, -1)$$),
  ($$SELECT count(*) FROM presence_history('room', 10, 9)$$),
  ($$SELECT presence_last_seen(NULL)$$),
  ($$SELECT presence_last_seen('')$$),
  ($$SELECT presence_last_seen(repeat('x', 256))$$),
  ($$SELECT presence_last_seen('user:1', '')$$),
  ($$SELECT presence_last_seen('user:1', repeat('x', 256))$$),
  ($$SELECT count(*) FROM presence_principals(NULL)$$),
  ($$SELECT count(*) FROM presence_principals('')$$),
  ($$SELECT count(*) FROM presence_principals(repeat('x', 256))$$),
  ($$SELECT presence_count_principals(NULL)$$),
  ($$SELECT presence_count_principals('')$$),
  ($$SELECT presence_count_principals(repeat('x', 256))$$);

SELECT n, q, pg_temp.try(q) AS result FROM cases ORDER BY n;

-- Nothing changed: entries, workers, seqs, session worker.
SELECT count(*) AS entries_changed FROM (
  (SELECT * FROM tep_presence EXCEPT SELECT * FROM before_entries)
  UNION ALL
  (SELECT * FROM before_entries EXCEPT SELECT * FROM tep_presence)) d;
SELECT count(*) AS workers_changed FROM (
  (SELECT * FROM tep_presence_worker EXCEPT SELECT * FROM before_workers)
  UNION ALL
  (SELECT * FROM before_workers EXCEPT SELECT * FROM tep_presence_worker)) d;
SELECT count(*) AS seqs_changed FROM (
  (SELECT * FROM presence_topic_seq EXCEPT SELECT * FROM before_seqs)
  UNION ALL
  (SELECT * FROM before_seqs EXCEPT SELECT * FROM presence_topic_seq)) d;
SHOW presence.worker_id;

-- The limits themselves are accepted: 255-byte names, a 1024-byte note
-- (bytes, not characters), fd 0, until_ts 0.
BEGIN;
SELECT presence_track(repeat('t', 255), 0, repeat('p', 255), 'agent_for',
                      repeat('a', 255), repeat('w', 255));
SELECT presence_set_status(repeat('t', 255), 0, 'blocked', repeat('é', 512),
                           0, repeat('w', 255));
SELECT octet_length(topic), octet_length(principal_id), octet_length(agent_id),
       octet_length(worker_id), octet_length(status_note)
  FROM tep_presence WHERE fd = 0;
-- until_ts exactly 100 years (of 365.25 days) ahead, in each form.
SELECT presence_set_status(repeat('t', 255), 0, 'busy', '',
                           trunc(extract(epoch FROM now()))::bigint + 3155760000,
                           repeat('w', 255)) AS seconds,
       presence_set_status(repeat('t', 255), 0, 'busy', '',
                           now() + interval '100 years', repeat('w', 255)) AS timestamptz,
       presence_set_status(repeat('t', 255), 0, 'busy', '',
                           interval '100 years', repeat('w', 255)) AS interval;
ROLLBACK;

----------------------------------------------------------------------------
-- A diff that would not fit NOTIFY (payload must be < 8000 bytes) is an
-- error, and nothing changes.  Control characters escape to \u00XX, six
-- bytes each: a 1024-byte note of \x01 is 6144 bytes in JSON; with a
-- 255-byte topic, principal and agent of control characters the status
-- diff is well over 8000 bytes, while the join diff (empty note) fits.
----------------------------------------------------------------------------
\set ctl255 'repeat(E''\\x01'', 255)'
BEGIN;
SELECT presence_track(:ctl255, 4, :ctl255, 'agent_for', :ctl255, 'gw-big');
SELECT pg_temp.try(format('SELECT presence_set_status(%L, 4, %L, %L, 0, %L)',
                          repeat(E'\x01', 255), 'busy', repeat(E'\x01', 1024),
                          'gw-big')) AS too_long;
SELECT status_state, status_note = '' AS note_unchanged
  FROM tep_presence WHERE worker_id = 'gw-big';
-- The same note on a short entry fits (6144 + about 200 bytes).
SELECT presence_set_status('room', 1, 'busy', repeat(E'\x01', 1024), 0,
                           'gw-1') AS fits;
ROLLBACK;

-- The table itself refuses a row whose leave could not be sent (it could
-- never be pruned), whoever writes it: here Tep's own INSERT.
SELECT pg_temp.try(format(
  $$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind,
                             agent_id, since_ts, status_note)
    VALUES ('tep-w', %L, 1, %L, 'agent_for', %L, 0, %L)$$,
  repeat(E'\x01', 255), repeat(E'\x01', 255), repeat(E'\x01', 255),
  repeat(E'\x01', 1024))) AS tep_insert_too_long;
SELECT count(*) AS tep_rows FROM tep_presence WHERE worker_id = 'tep-w';

-- GUCs check their values too.
SELECT pg_temp.try($$SELECT set_config('presence.worker_id', repeat('x', 256), false)$$);
SELECT pg_temp.try($$SELECT set_config('presence.channel', '', false)$$);
SELECT pg_temp.try($$SELECT set_config('presence.channel', repeat('c', 64), false)$$);
SHOW presence.worker_id;
SHOW presence.channel;

-- Clean up.
RESET presence.worker_id;
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
