--
-- presence_app_role: GRANT presence_app TO <role> is all an app needs.  The
-- extension makes the NOLOGIN role (roles are cluster-wide: once, and
-- reused by every database and every CREATE EXTENSION after a DROP:
-- test/integration/t/21_gateway_mistakes.t) and grants it the API.  A role granted it does the README's walk-through
-- and a gateway's life (worker start, heartbeat, stop, LISTEN) with no
-- other privilege, and cannot run the maintenance: the sweep and the prune,
-- which act on every worker whoever owns it, and history_maintain, which
-- drops the history's partitions (the background worker runs all three).
--
SET client_min_messages = warning;

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

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

CREATE TEMP VIEW ext_functions AS
SELECT p.oid::regprocedure AS f
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'presence';

-- The role: NOLOGIN, nothing but its grants.
SELECT rolname, rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
       rolreplication, rolbypassrls
  FROM pg_roles WHERE rolname = 'presence_app';
-- What it may execute, and what not.
SELECT f, has_function_privilege('presence_app', f, 'EXECUTE') AS app
  FROM ext_functions ORDER BY app, f::text;
-- No table privilege.
SELECT count(*) AS table_grants
  FROM information_schema.role_table_grants WHERE grantee = 'presence_app';

DROP ROLE IF EXISTS regress_app_walk;
CREATE ROLE regress_app_walk;
GRANT presence_app TO regress_app_walk;
SET ROLE regress_app_walk;

-- The README's getting started.
SELECT presence_track('room:lobby', 7, 'user:42');
SELECT presence_track('room:lobby', 8, 'user:42', 'agent_for', 'summarizer-bot');
SELECT presence_set_status('room:lobby', 8, 'blocked', 'Claude API throttled',
                           extract(epoch FROM now())::bigint + 600);
SELECT presence_set_status('room:lobby', 8, 'busy', 'summarizing', now() + interval '10 min');
SELECT presence_set_status('room:lobby', 7, 'busy', 'in a call', interval '5 min');
SELECT principal_id, kind, agent_id, status_state, status_note,
       status_until - ceil(extract(epoch FROM now()))::bigint AS expires_in
  FROM presence_list_global('room:lobby');
SELECT presence_count_global('room:lobby'), presence_count_agents_global('room:lobby'),
       presence_count_humans_global('room:lobby'), presence_count('room:lobby'),
       presence_count_principals('room:lobby');
SELECT principal_id, humans, agents, connections, state FROM presence_principals('room:lobby');
SELECT fd FROM presence_list('room:lobby');
SELECT (presence_find_entry('room:lobby', 7)).status_state;
SELECT presence_set_meta('room:lobby', 7, '{"name": "Ann"}');
SELECT presence_clear_status('room:lobby', 7);
SELECT presence_untrack_by_fd(7);
SELECT json_array_length(presence_snapshot('room:lobby') -> 'entries') AS snapshot_entries,
       (presence_snapshot('room:lobby') ->> 'seq')::int AS snapshot_seq;
SELECT presence_diff_topic('room:lobby'), presence_channel('room:lobby'),
       length(presence_epoch()) AS epoch_digits;
SELECT presence_untrack('room:lobby', 8);
SELECT presence_last_seen('user:42') IS NOT NULL AS last_seen;
SELECT count(*) AS history FROM presence_history('room:lobby', 0, 9223372036854775807);
-- A gateway's life: its worker on this (dedicated) connection, a leased one
-- for a pool, heartbeats, stop.
SELECT presence_worker_start('gw-walk');
SELECT presence_track('room:lobby', 1, 'user:7');
SELECT presence_worker_start('gw-walk-pool', interval '30 seconds');
SELECT presence_track('room:lobby', 1, 'user:8', worker_id => 'gw-walk-pool');
SELECT presence_heartbeat('gw-walk-pool'), presence_heartbeat('gw-walk');
SELECT presence_clear('gw-walk-pool');
SELECT presence_worker_stop('gw-walk-pool'), presence_worker_stop('gw-walk');
-- A subscriber: LISTEN needs no grant.
LISTEN tep_broadcast;
LISTEN "presence:room:lobby";
UNLISTEN *;
-- The maintenance is not the app's.
SELECT pg_temp.try('SELECT presence_sweep_expired_status()') AS sweep;
SELECT pg_temp.try('SELECT presence_prune_dead_workers()') AS prune;
SELECT pg_temp.try('SELECT presence_history_maintain()') AS history_maintain;
-- Nor the tables.
SELECT pg_temp.try('SELECT count(*) FROM tep_presence') AS entries;
SELECT pg_temp.try('SELECT count(*) FROM presence_ended_worker') AS ended_workers;
RESET ROLE;
SELECT worker_id, count(*) FROM tep_presence GROUP BY 1 ORDER BY 1;

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
DELETE FROM presence_history;
DROP ROLE regress_app_walk;
