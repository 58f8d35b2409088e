-- Tep's own PG-mirror statements run against the extension's tables, and
-- the extension's functions see, sweep and prune what Tep wrote.  Tep
-- sends them as parameterised statements (here PREPAREd): its upsert
-- INSERT ... ON CONFLICT (worker_id, topic, fd), its status UPDATE, its
-- DELETE, its heartbeat upsert into tep_presence_worker, and its boot
-- cleanup (DELETE of its own worker_id).  They run as a superuser and as a
-- role with only the table privileges the README gives a Tep app.
-- Everything is rolled back at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
BEGIN;
SELECT plan(32);

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

PREPARE tep_upsert(text, text, integer, text, text, text, bigint, text, text, bigint) AS
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id,
                          since_ts, status_state, status_note, status_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (worker_id, topic, fd) DO UPDATE SET
  principal_id = EXCLUDED.principal_id, kind = EXCLUDED.kind,
  agent_id = EXCLUDED.agent_id, since_ts = EXCLUDED.since_ts,
  status_state = EXCLUDED.status_state, status_note = EXCLUDED.status_note,
  status_until = EXCLUDED.status_until;
PREPARE tep_status(text, text, bigint, text, text, integer) AS
UPDATE tep_presence SET status_state = $1, status_note = $2, status_until = $3
 WHERE worker_id = $4 AND topic = $5 AND fd = $6;
PREPARE tep_delete(text, text, integer) AS
DELETE FROM tep_presence WHERE worker_id = $1 AND topic = $2 AND fd = $3;
PREPARE tep_heartbeat(text, bigint) AS
INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES ($1, $2)
ON CONFLICT (worker_id) DO UPDATE SET last_seen_ts = EXCLUDED.last_seen_ts;
PREPARE tep_boot_cleanup(text) AS
DELETE FROM tep_presence WHERE worker_id = $1;

CREATE FUNCTION pg_temp.now_s() RETURNS bigint LANGUAGE sql AS
$$ SELECT trunc(extract(epoch FROM now()))::bigint $$;

----------------------------------------------------------------------------
-- As a superuser.
----------------------------------------------------------------------------
SELECT lives_ok($$EXECUTE tep_heartbeat('1234-1716392400', pg_temp.now_s())$$,
                'Tep heartbeat upsert: first beat');
SELECT lives_ok($$EXECUTE tep_heartbeat('1234-1716392400', pg_temp.now_s())$$,
                'Tep heartbeat upsert: next beat (ON CONFLICT (worker_id))');
SELECT lives_ok($$EXECUTE tep_boot_cleanup('1234-1716392400')$$,
                'Tep boot cleanup');
SELECT lives_ok($$EXECUTE tep_upsert('1234-1716392400', 'room:lobby', 5, 'user:42', 'human', '', 1716392400, 'available', '', 0)$$,
                'Tep upsert: new row');
SELECT lives_ok($$EXECUTE tep_upsert('1234-1716392400', 'room:lobby', 6, 'user:42', 'agent_for', 'summarizer-bot', 1716392401, 'busy', 'summarizing', 0)$$,
                'Tep upsert: an agent');
SELECT lives_ok($$EXECUTE tep_upsert('1234-1716392400', 'room:lobby', 5, 'user:42', 'human', '', 1716392400, 'busy', 'on a call', 0)$$,
                'Tep upsert: same (worker_id, topic, fd) again, ON CONFLICT updates');
SELECT is((SELECT count(*) FROM tep_presence), 2::bigint, 'one row per (worker_id, topic, fd)');
SELECT lives_ok($$EXECUTE tep_status('blocked', 'waiting', 0, '1234-1716392400', 'room:lobby', 5)$$,
                'Tep status UPDATE');

-- The functions see Tep's rows.
SELECT is(presence_count('room:lobby', '1234-1716392400'), 2::bigint, 'presence_count sees Tep''s rows');
SELECT is(presence_count_agents_global('room:lobby'), 1::bigint, 'presence_count_agents_global sees Tep''s agent');
SELECT results_eq(
  $$SELECT fd, principal_id, kind, agent_id, since_ts, status_state, status_note
      FROM presence_list('room:lobby', '1234-1716392400')$$,
  $$VALUES (5, 'user:42', 'human', '', 1716392400::bigint, 'blocked', 'waiting'),
           (6, 'user:42', 'agent_for', 'summarizer-bot', 1716392401::bigint, 'busy', 'summarizing')$$,
  'presence_list returns Tep''s rows, oldest first');
SELECT is((presence_find_entry('room:lobby', 6, '1234-1716392400')).agent_id, 'summarizer-bot',
          'presence_find_entry finds Tep''s row');
SELECT is(presence_heartbeat('1234-1716392400'), true,
          'presence_heartbeat accepts Tep''s heartbeat worker (fresh: alive)');
-- Rows Tep writes carry no seq: the topic's first diff is seq 1.
SELECT is((presence_snapshot('room:lobby') ->> 'seq')::bigint, 0::bigint, 'Tep''s writes do not move seq');
SELECT is(json_array_length(presence_snapshot('room:lobby') -> 'entries'), 2, 'the snapshot lists Tep''s rows');
SELECT ok(presence_track('room:lobby', 7, 'user:7', worker_id => 'gw-ext'), 'the extension tracks next to Tep''s rows');
SELECT is((presence_snapshot('room:lobby') ->> 'seq')::bigint, 0::bigint, '... whose seq is given at commit (none yet in this transaction)');
SELECT ok(presence_set_status('room:lobby', 5, 'available', 'back', 0, '1234-1716392400'),
          'presence_set_status changes a Tep row');

-- Sweep resets a status Tep wrote with an expiry in the past.
EXECUTE tep_status('busy', 'until yesterday', pg_temp.now_s() - 86400, '1234-1716392400', 'room:lobby', 6);
SELECT is(presence_sweep_expired_status(), 1, 'sweep resets the expired status Tep wrote');
SELECT is(ARRAY[status_state, status_note, status_until::text],
          ARRAY['available', '', '0'], '... back to available / '''' / 0')
  FROM presence_find_entry('room:lobby', 6, '1234-1716392400');

-- Tep's constraints: a bad kind/agent_id pair or state is refused.
SELECT throws_ok($$EXECUTE tep_upsert('1234-1716392400', 'room:lobby', 8, 'u', 'agent_for', '', 1, 'available', '', 0)$$,
                 '23514', NULL, 'agent_for without agent_id is refused');
SELECT throws_ok($$EXECUTE tep_status('away', '', 0, '1234-1716392400', 'room:lobby', 5)$$,
                 '23514', NULL, 'an unknown state is refused');

-- Prune: a Tep worker whose heartbeat is older than presence.worker_ttl
-- (default 90 s) is dead; a fresh one is not; rows with no worker row are
-- dead.
EXECUTE tep_heartbeat('dead-tep', pg_temp.now_s() - 100000);
EXECUTE tep_upsert('dead-tep', 'room:lobby', 1, 'u1', 'human', '', 1, 'available', '', 0);
EXECUTE tep_upsert('dead-tep', 'room:other', 1, 'u1', 'human', '', 1, 'available', '', 0);
EXECUTE tep_upsert('no-heartbeat', 'room:other', 2, 'u2', 'human', '', 1, 'available', '', 0);
EXECUTE tep_heartbeat('1234-1716392400', pg_temp.now_s());
SELECT is(presence_prune_dead_workers(), 3, 'prune removes the stale Tep worker''s and the orphan rows');
SELECT is((SELECT array_agg(DISTINCT worker_id ORDER BY worker_id) FROM tep_presence),
          ARRAY['1234-1716392400', 'gw-ext'], '... and keeps the live ones');
SELECT is((SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'dead-tep'), 0::bigint,
          '... and the stale worker row');
SELECT lives_ok($$EXECUTE tep_delete('1234-1716392400', 'room:lobby', 6)$$, 'Tep DELETE');
SELECT is(presence_count_global('room:lobby'), 2::bigint, 'the functions see Tep''s DELETE');

----------------------------------------------------------------------------
-- As a role with only the table privileges the README gives a Tep app
-- (INSERT, UPDATE, DELETE, SELECT on tep_presence and tep_presence_worker).
----------------------------------------------------------------------------
CREATE ROLE presence_tap_tep_app;
GRANT INSERT, UPDATE, DELETE, SELECT ON tep_presence, tep_presence_worker
   TO presence_tap_tep_app;
EXECUTE tep_upsert('app-7', 'room:app', 2, 'u', 'human', '', 1, 'available', '', 0);
SET ROLE presence_tap_tep_app;
SELECT lives_ok($$EXECUTE tep_heartbeat('app-7', 1)$$, 'Tep app role: heartbeat upsert');
SELECT lives_ok($$EXECUTE tep_upsert('app-7', 'room:app', 1, 'u', 'agent_for', 'bot', 1, 'available', '', 0)$$,
                'Tep app role: upsert');
SELECT lives_ok($$EXECUTE tep_status('busy', 'x', 0, 'app-7', 'room:app', 2)$$,
                'Tep app role: status UPDATE');
SELECT lives_ok($$EXECUTE tep_delete('app-7', 'room:app', 2)$$, 'Tep app role: DELETE');
SELECT lives_ok($$EXECUTE tep_boot_cleanup('app-7')$$, 'Tep app role: boot cleanup');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
