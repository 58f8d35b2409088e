--
-- presence_api: every function of SPEC's Tep surface, its results and the
-- rows it leaves.  Worker ids are explicit (deterministic output); the
-- connection-bound default is covered in presence_workers.
--
-- NOTIFY payloads are checked by the isolation specs (psql prints the
-- notifying PID, which varies); here each diff is observed through its
-- per-topic seq: presence_topic_seq must advance by exactly one per diff.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- Start from empty tables (other files may leave rows behind).
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

CREATE FUNCTION pg_temp.seq(t text) RETURNS bigint LANGUAGE sql AS
$$ SELECT coalesce((SELECT seq FROM presence_topic_seq WHERE topic = t), 0) $$;
CREATE FUNCTION pg_temp.now_s() RETURNS bigint LANGUAGE sql AS
$$ SELECT trunc(extract(epoch FROM now()))::bigint $$;

-- An empty registry.
SELECT count(*) FROM tep_presence;
SELECT presence_count_global('room:lobby'), pg_temp.seq('room:lobby');

-- diff_topic
SELECT presence_diff_topic('room:lobby');
SELECT presence_diff_topic('salle:café');

----------------------------------------------------------------------------
-- track: true when new, join diff; since_ts is the transaction's time.
----------------------------------------------------------------------------
BEGIN;
SELECT presence_track('room:lobby', 5, 'user:42', worker_id => 'gw-1');
SELECT worker_id, topic, fd, principal_id, kind, agent_id,
       since_ts = pg_temp.now_s() AS since_is_xact_start,
       status_state, status_note, status_until
  FROM tep_presence;
-- Still the transaction start later in the same transaction.
SELECT pg_sleep(1.1);
SELECT presence_track('room:lobby', 6, 'user:43', worker_id => 'gw-1');
SELECT fd, since_ts = pg_temp.now_s() AS since_is_xact_start
  FROM tep_presence ORDER BY fd;
ROLLBACK;
SELECT count(*) AS after_rollback, pg_temp.seq('room:lobby') AS seq
  FROM tep_presence;

-- One transaction, so that every entry has the same since_ts.  Seqs are
-- given at commit: until then the topic's seq stays where it was.
BEGIN;
SELECT presence_track('room:lobby', 5, 'user:42', worker_id => 'gw-1');
SELECT pg_temp.seq('room:lobby');
-- Same (topic, worker, fd) again: false, left as is (principal and kind
-- not overwritten), no diff.
SELECT presence_track('room:lobby', 5, 'user:99', 'agent_for', 'bot',
                      worker_id => 'gw-1');
SELECT principal_id, kind, agent_id FROM tep_presence WHERE fd = 5;
SELECT pg_temp.seq('room:lobby');
-- The same fd under another worker, or in another topic, is another entry.
SELECT presence_track('room:lobby', 5, 'user:7', worker_id => 'gw-2');
SELECT presence_track('room:other', 5, 'user:42', worker_id => 'gw-1');
-- An agent acting for user:42.
SELECT presence_track('room:lobby', 9, 'user:42', 'agent_for',
                      'summarizer-bot', 'gw-1');
SELECT presence_track('room:lobby', 3, 'user:42', kind => 'human',
                      worker_id => 'gw-1');
SELECT pg_temp.seq('room:lobby') AS lobby_seq,
       pg_temp.seq('room:other') AS other_seq;
COMMIT;
-- Four joins in the lobby (the repeated track sent none), one in other.
SELECT pg_temp.seq('room:lobby') AS lobby_seq,
       pg_temp.seq('room:other') AS other_seq;

-- find_entry: the row, or NULL.
SELECT worker_id, topic, fd, principal_id, kind, agent_id,
       since_ts = (SELECT min(since_ts) FROM tep_presence) AS since_ok,
       status_state, status_note, status_until
  FROM presence_find_entry('room:lobby', 9, 'gw-1');
SELECT presence_find_entry('room:lobby', 9, 'gw-2') IS NULL AS not_found;
SELECT presence_find_entry('room:lobby', 4, 'gw-1') IS NULL AS not_found;
SELECT presence_find_entry('nowhere', 5, 'gw-1') IS NULL AS not_found;

-- list: this worker's; list_global: every worker's.
SELECT worker_id, fd, principal_id, kind, agent_id
  FROM presence_list('room:lobby', 'gw-1');
SELECT worker_id, fd, principal_id
  FROM presence_list('room:lobby', 'gw-2');
SELECT count(*) FROM presence_list('room:lobby', 'gw-3');
SELECT worker_id, fd, principal_id
  FROM presence_list_global('room:lobby') ORDER BY worker_id, fd;
SELECT count(*) FROM presence_list_global('nowhere');

-- The six counts, by kind, local vs global.
SELECT presence_count('room:lobby', 'gw-1') AS all_gw1,
       presence_count_humans('room:lobby', 'gw-1') AS humans_gw1,
       presence_count_agents('room:lobby', 'gw-1') AS agents_gw1,
       presence_count('room:lobby', 'gw-2') AS all_gw2,
       presence_count_humans('room:lobby', 'gw-2') AS humans_gw2,
       presence_count_agents('room:lobby', 'gw-2') AS agents_gw2;
SELECT presence_count_global('room:lobby') AS all_global,
       presence_count_humans_global('room:lobby') AS humans_global,
       presence_count_agents_global('room:lobby') AS agents_global,
       presence_count_global('room:other') AS other_global,
       presence_count('nowhere', 'gw-1') AS nowhere_local,
       presence_count_global('nowhere') AS nowhere_global;

-- The session's worker (presence.worker_id) is the default worker_id.
SET presence.worker_id = 'gw-2';
SELECT presence_count('room:lobby') AS gw2_count,
       presence_count_humans('room:lobby') AS gw2_humans,
       presence_count_agents('room:lobby') AS gw2_agents;
SELECT fd, principal_id FROM presence_list('room:lobby');
SELECT (presence_find_entry('room:lobby', 5)).principal_id;
RESET presence.worker_id;

----------------------------------------------------------------------------
-- List order: since_ts, then worker_id, then fd (rows written Tep-style
-- with chosen since_ts, in scrambled physical order).
----------------------------------------------------------------------------
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES
  ('w-b', 'order', 2, 'p1', 200),
  ('w-a', 'order', 9, 'p2', 300),
  ('w-b', 'order', 1, 'p3', 200),
  ('w-a', 'order', 3, 'p4', 200),
  ('w-a', 'order', 1, 'p5', 100),
  ('w-c', 'order', 0, 'p6', 200),
  ('w-a', 'order', 2, 'p7', 200);
SELECT since_ts, worker_id, fd, principal_id FROM presence_list_global('order');
SELECT since_ts, worker_id, fd, principal_id FROM presence_list('order', 'w-a');
DELETE FROM tep_presence WHERE topic = 'order';

----------------------------------------------------------------------------
-- set_status / clear_status: status diff each time, even for the same
-- status; false (no diff) when there is no such entry.
----------------------------------------------------------------------------
SELECT pg_temp.seq('room:lobby') AS seq_before;
SELECT presence_set_status('room:lobby', 5, 'busy', 'in a call', 4102444800,
                           'gw-1');
SELECT status_state, status_note, status_until
  FROM presence_find_entry('room:lobby', 5, 'gw-1');
SELECT presence_set_status('room:lobby', 5, 'busy', 'in a call', 4102444800,
                           'gw-1') AS same_again;
SELECT pg_temp.seq('room:lobby') AS seq_after_two;
SELECT presence_set_status('room:lobby', 5, 'blocked', worker_id => 'gw-1');
SELECT status_state, status_note, status_until
  FROM presence_find_entry('room:lobby', 5, 'gw-1');
SELECT presence_set_status('room:lobby', 5, 'available', 'back', 0, 'gw-1');
SELECT presence_set_status('room:lobby', 77, 'busy', 'x', 0, 'gw-1') AS no_entry;
SELECT presence_set_status('room:lobby', 5, 'busy', 'x', 0, 'gw-3') AS no_entry;
SELECT pg_temp.seq('room:lobby') AS seq_after_four;
-- Other entries untouched.
SELECT worker_id, fd, status_state, status_note, status_until
  FROM presence_list_global('room:lobby') ORDER BY worker_id, fd;
-- The note keeps any text as is.
SELECT presence_set_status('room:lobby', 9, 'busy',
                           E'say "hi" \\ back\nline2\t\u0001 🦊 café', 0,
                           'gw-1');
SELECT status_note = E'say "hi" \\ back\nline2\t\u0001 🦊 café' AS note_kept
  FROM presence_find_entry('room:lobby', 9, 'gw-1');
SELECT presence_clear_status('room:lobby', 9, 'gw-1');
SELECT status_state, status_note, status_until
  FROM presence_find_entry('room:lobby', 9, 'gw-1');
-- clear_status of an available entry is still a write (diff).
SELECT presence_clear_status('room:lobby', 9, 'gw-1');
SELECT presence_clear_status('room:lobby', 10, 'gw-1') AS no_entry;
SELECT pg_temp.seq('room:lobby') AS seq_after_clears;

----------------------------------------------------------------------------
-- sweep_expired_status: resets every expired status (all workers), one
-- status diff each; a future or 0 until is left alone.  Done in one
-- transaction so a background worker's sweep cannot take them first.
----------------------------------------------------------------------------
BEGIN;
SELECT presence_set_status('room:lobby', 5, 'busy', 'expired', 1, 'gw-1');
SELECT presence_set_status('room:lobby', 5, 'blocked', 'expired too',
                           pg_temp.now_s() - 1, 'gw-2');
SELECT presence_set_status('room:other', 5, 'busy', 'expired', 1000, 'gw-1');
SELECT presence_set_status('room:lobby', 3, 'busy', 'future',
                           pg_temp.now_s() + 3600, 'gw-1');
SELECT presence_set_status('room:lobby', 9, 'blocked', 'no expiry', 0, 'gw-1');
SELECT pg_temp.seq('room:lobby') AS lobby_seq, pg_temp.seq('room:other') AS other_seq;
SELECT presence_sweep_expired_status() AS reset;
SELECT worker_id, topic, fd, status_state, status_note,
       status_until > 0 AS has_until
  FROM tep_presence ORDER BY topic, worker_id, fd;
SELECT pg_temp.seq('room:lobby') AS lobby_seq, pg_temp.seq('room:other') AS other_seq;
SELECT presence_sweep_expired_status() AS reset_again;
COMMIT;
-- At commit: four status diffs in the lobby and one in other, then the
-- sweep's two and one.
SELECT pg_temp.seq('room:lobby') AS lobby_seq, pg_temp.seq('room:other') AS other_seq;

----------------------------------------------------------------------------
-- snapshot: {"topic", "seq", "entries", "epoch"} with diff-shaped entries
-- (no "kind", no "seq"), oldest first, every worker.  The epoch differs
-- from one server run to the next: shown as E where it is presence_epoch().
----------------------------------------------------------------------------
UPDATE tep_presence SET since_ts = 1716392400 + fd;
UPDATE tep_presence SET status_until = 4102444800 WHERE status_until > 0;
-- (one entry per output line: the text is split after each object)
SELECT replace(replace(replace(presence_snapshot('room:lobby')::text, '},{', E'},\n{'),
                       '[{', E'[\n{'), presence_epoch(), 'E') AS snapshot;
SELECT (presence_snapshot('room:lobby') ->> 'seq')::bigint
       = pg_temp.seq('room:lobby') AS seq_matches;
SELECT replace(presence_snapshot('nowhere')::text, presence_epoch(), 'E');
SELECT replace(presence_snapshot(E'q"uote\\')::text, presence_epoch(), 'E');
-- epoch: 16 hex digits, the same for every call of a server run.
SELECT presence_epoch() ~ '^[0-9a-f]{16}$' AS epoch_is_hex,
       presence_epoch() = presence_epoch() AS epoch_is_stable;

----------------------------------------------------------------------------
-- untrack: true + leave diff; false when absent (no diff).
----------------------------------------------------------------------------
SELECT pg_temp.seq('room:lobby') AS seq_before;
SELECT presence_untrack('room:lobby', 3, 'gw-1');
SELECT presence_untrack('room:lobby', 3, 'gw-1') AS again;
SELECT presence_untrack('room:lobby', 5, 'gw-3') AS other_worker;
SELECT pg_temp.seq('room:lobby') AS seq_after;
SELECT presence_count_global('room:lobby');

----------------------------------------------------------------------------
-- untrack_by_fd: one fd of one worker, every topic.
----------------------------------------------------------------------------
SELECT presence_track('room:third', 5, 'user:42', worker_id => 'gw-1');
SELECT presence_track('room:third', 6, 'user:43', worker_id => 'gw-1');
SELECT pg_temp.seq('room:lobby') AS lobby, pg_temp.seq('room:other') AS other,
       pg_temp.seq('room:third') AS third;
SELECT presence_untrack_by_fd(5, 'gw-1');
SELECT worker_id, topic, fd FROM tep_presence ORDER BY topic, worker_id, fd;
SELECT pg_temp.seq('room:lobby') AS lobby, pg_temp.seq('room:other') AS other,
       pg_temp.seq('room:third') AS third;
SELECT presence_untrack_by_fd(5, 'gw-1') AS again;
SELECT presence_untrack_by_fd(12345, 'gw-1') AS unknown_fd;
SELECT presence_untrack_by_fd(5, 'no-such-worker') AS unknown_worker;

----------------------------------------------------------------------------
-- clear: every entry of one worker (leave diffs), others stay.
----------------------------------------------------------------------------
SELECT presence_track('room:lobby', 1, 'user:1', worker_id => 'gw-2');
SELECT worker_id, topic, fd FROM tep_presence ORDER BY topic, worker_id, fd;
SELECT pg_temp.seq('room:lobby') AS lobby, pg_temp.seq('room:third') AS third;
SELECT presence_clear('gw-1');
SELECT worker_id, topic, fd FROM tep_presence ORDER BY topic, worker_id, fd;
SELECT pg_temp.seq('room:lobby') AS lobby, pg_temp.seq('room:third') AS third;
SELECT presence_clear('gw-1') AS again;
SET presence.worker_id = 'gw-2';
SELECT presence_clear();
RESET presence.worker_id;
SELECT count(*) AS left FROM tep_presence;

-- The seq of a topic never goes back, even once it is empty.
SELECT topic, seq FROM presence_topic_seq ORDER BY topic;
SELECT presence_track('room:other', 1, 'user:1', worker_id => 'gw-1');
SELECT pg_temp.seq('room:other');
SELECT presence_clear('gw-1');

-- Clean up.
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
