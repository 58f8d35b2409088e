--
-- presence_privileges: PUBLIC can neither execute the functions nor touch
-- the tables; a role given the README's one GRANT works through the
-- functions without any table privilege; a caller's temp table, tables,
-- functions and operators named like the ones the functions use cannot
-- capture the functions' queries, whatever the caller's search_path.
--
SET client_min_messages = warning;

-- Start from empty tables (other files may leave rows behind).
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

DROP ROLE IF EXISTS regress_presence_nobody;
DROP ROLE IF EXISTS regress_presence_app;
CREATE ROLE regress_presence_nobody;
CREATE ROLE regress_presence_app;

-- The extension's functions and tables.
CREATE TEMP VIEW ext_functions AS
SELECT p.oid::regprocedure AS f, p.prosecdef, p.proconfig, p.proacl
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'presence';
CREATE TEMP VIEW ext_tables AS
-- A NULL relacl is the default ACL (the owner's alone): after pg_upgrade the
-- tables have it, where CREATE EXTENSION's REVOKE left the same ACL spelled
-- out.
SELECT c.oid::regclass AS t, coalesce(c.relacl, acldefault('r', c.relowner)) AS relacl
  FROM pg_class c
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'presence'
 WHERE c.relkind = 'r';

SELECT t FROM ext_tables ORDER BY t::text;

-- Every function: no EXECUTE for PUBLIC (no ACL entry with grantee 0);
-- the SQL API runs as the extension's owner (SECURITY DEFINER).  The one
-- exception is presence_entry_is_valid, the function behind tep_presence's
-- CHECK: it runs as whoever writes a row, so PUBLIC may execute it.
SELECT f, prosecdef AS security_definer,
       proacl IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM aclexplode(proacl) a WHERE a.grantee = 0) AS not_public,
       has_function_privilege('regress_presence_nobody', f, 'EXECUTE')
         AS nobody_can_execute
  FROM ext_functions ORDER BY f::text;
-- Every table: nothing for PUBLIC.
SELECT t,
       relacl IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM aclexplode(relacl) a WHERE a.grantee = 0) AS not_public,
       has_table_privilege('regress_presence_nobody', t,
           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
         AS nobody_has_any
  FROM ext_tables ORDER BY t::text;

-- A role with no grant is refused, on functions and tables alike.
SET ROLE regress_presence_nobody;
SELECT pg_temp.try($$SELECT presence_track('room', 1, 'p', worker_id => 'w')$$);
SELECT pg_temp.try($$SELECT count(*) FROM presence_list_global('room')$$);
SELECT pg_temp.try($$SELECT presence_count_global('room')$$);
SELECT pg_temp.try($$SELECT presence_snapshot('room')::text$$);
SELECT pg_temp.try($$SELECT presence_diff_topic('room')$$);
SELECT pg_temp.try($$SELECT presence_worker_start('w')$$);
SELECT pg_temp.try($$SELECT presence_prune_dead_workers()$$);
SELECT pg_temp.try($$SELECT count(*) FROM tep_presence$$);
SELECT pg_temp.try($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES ('w', 'room', 1, 'p', 1) RETURNING 1$$);
SELECT pg_temp.try($$UPDATE tep_presence SET fd = 2 RETURNING 1$$);
SELECT pg_temp.try($$DELETE FROM tep_presence RETURNING 1$$);
SELECT pg_temp.try($$INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES ('w', 1) RETURNING 1$$);
SELECT pg_temp.try($$SELECT count(*) FROM presence_topic_seq$$);
SELECT pg_temp.try($$UPDATE presence_topic_seq SET seq = 0 RETURNING 1$$);
RESET ROLE;
SELECT count(*) AS entries FROM tep_presence;

-- The README's one GRANT.
GRANT EXECUTE ON FUNCTION
  presence_track, presence_untrack, presence_untrack_by_fd, presence_list,
  presence_list_global, presence_count, presence_count_humans,
  presence_count_agents, presence_count_global, presence_count_humans_global,
  presence_count_agents_global, presence_set_status, presence_clear_status,
  presence_find_entry, presence_sweep_expired_status, presence_clear,
  presence_diff_topic, presence_snapshot, presence_worker_start,
  presence_heartbeat, presence_worker_stop, presence_prune_dead_workers,
  presence_channel, presence_epoch
TO regress_presence_app;
SELECT f FROM ext_functions
 WHERE NOT has_function_privilege('regress_presence_app', f, 'EXECUTE')
 ORDER BY f::text;
-- Still nothing on the tables.
SELECT t, has_table_privilege('regress_presence_app', t,
           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
         AS app_has_any
  FROM ext_tables ORDER BY t::text;

-- A real entry of another (Tep, heartbeat) worker, which the app must see
-- through the functions whatever it has created.  Written directly, so
-- that this backend prepares its queries for the first time below, under
-- the hostile search_path.
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
VALUES ('gw-other', 'room', 9, 'user:owner', 1);
INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
VALUES ('gw-other', trunc(extract(epoch FROM now())));

-- The app's own lookalikes: a schema of its own, first in its search_path
-- (before pg_catalog), with tables named like ours, functions named like
-- those our queries call, and an = operator on text; and a temp table
-- tep_presence.  Each lookalike raises if it is ever used.
CREATE SCHEMA regress_evil AUTHORIZATION regress_presence_app;
SET ROLE regress_presence_app;
CREATE FUNCTION regress_evil.captured() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'captured by a lookalike %', TG_TABLE_NAME; END $$;
CREATE TABLE regress_evil.tep_presence
  (worker_id text, topic text, fd integer, principal_id text, kind text,
   agent_id text, since_ts bigint, status_state text, status_note text,
   status_until bigint);
CREATE TABLE regress_evil.tep_presence_worker
  (worker_id text, last_seen_ts bigint, backend_pid integer,
   backend_start timestamptz, lease interval, lease_until timestamptz);
CREATE TABLE regress_evil.presence_topic_seq (topic text, seq bigint);
CREATE TRIGGER t BEFORE INSERT OR UPDATE OR DELETE ON regress_evil.tep_presence
  FOR EACH ROW EXECUTE FUNCTION regress_evil.captured();
CREATE TRIGGER t BEFORE INSERT OR UPDATE OR DELETE ON regress_evil.tep_presence_worker
  FOR EACH ROW EXECUTE FUNCTION regress_evil.captured();
CREATE TRIGGER t BEFORE INSERT OR UPDATE OR DELETE ON regress_evil.presence_topic_seq
  FOR EACH ROW EXECUTE FUNCTION regress_evil.captured();
CREATE FUNCTION regress_evil.text_eq(text, text) RETURNS boolean
  LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'captured by operator ='; END $$;
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text,
                                FUNCTION = regress_evil.text_eq);
CREATE FUNCTION regress_evil.clock_timestamp() RETURNS timestamptz
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'captured by clock_timestamp'; END $$;
CREATE FUNCTION regress_evil.pg_stat_get_activity(integer) RETURNS SETOF record
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'captured by pg_stat_get_activity'; END $$;
CREATE FUNCTION regress_evil.unnest(anyarray) RETURNS SETOF anyelement
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'captured by unnest'; END $$;
CREATE FUNCTION regress_evil.count(text) RETURNS bigint
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'captured by count'; END $$;
CREATE TEMP TABLE tep_presence
  (worker_id text, topic text, fd integer, principal_id text, kind text,
   agent_id text, since_ts bigint, status_state text, status_note text,
   status_until bigint);
INSERT INTO pg_temp.tep_presence (worker_id, topic, fd, principal_id, since_ts)
VALUES ('gw-other', 'room', 9, 'user:temp-impostor', 1);
CREATE TEMP TABLE presence_topic_seq (topic text, seq bigint);
INSERT INTO pg_temp.presence_topic_seq VALUES ('room', 1000);
-- The caller's lookalikes do work for the caller's own queries.
SET search_path = regress_evil, pg_catalog, public;
SELECT pg_temp.try($$SELECT 'a' = 'a'$$);
SELECT pg_temp.try($$SELECT clock_timestamp()::text$$);
SET search_path = pg_temp, regress_evil, pg_catalog, public;
SELECT principal_id AS temp_row FROM tep_presence;

-- Every function, through that search_path, acts on the real tables.
SELECT presence_track('room', 1, 'user:app', worker_id => 'gw-app');
SELECT presence_track('room', 2, 'user:bot', 'agent_for', 'bot', 'gw-app');
SELECT principal_id, worker_id FROM presence_list_global('room')
 ORDER BY principal_id;
SELECT fd, principal_id FROM presence_list('room', 'gw-app');
SELECT presence_count('room', 'gw-app'), presence_count_humans('room', 'gw-app'),
       presence_count_agents('room', 'gw-app'), presence_count_global('room'),
       presence_count_humans_global('room'), presence_count_agents_global('room');
SELECT (presence_find_entry('room', 9, 'gw-other')).principal_id;
SELECT presence_set_status('room', 1, 'busy', 'n', 1, 'gw-app');
SELECT presence_clear_status('room', 2, 'gw-app');
SELECT presence_sweep_expired_status();
SELECT presence_snapshot('room')::text LIKE '{"topic":"room","seq":5,%' AS snapshot_ok;
SELECT presence_diff_topic('room');
SELECT presence_untrack('room', 2, 'gw-app');
SELECT presence_untrack_by_fd(1, 'gw-app');
SELECT presence_worker_start('gw-app2', interval '1 minute');
SELECT presence_track('room', 3, 'user:app2');
SELECT presence_heartbeat();
SELECT presence_worker_stop();
SELECT presence_track('room', 4, 'user:app', worker_id => 'gw-app');
SELECT presence_clear('gw-app');
SELECT presence_worker_start() LIKE 'pg-%' AS conn_id;
SELECT presence_prune_dead_workers();
SELECT presence_worker_stop();
-- The app still cannot read the real table directly.
SELECT pg_temp.try($$SELECT count(*) FROM public.tep_presence$$);
RESET search_path;
RESET ROLE;

-- What the superuser sees: the real tables hold the real history, the
-- lookalikes are untouched.
SELECT worker_id, topic, fd, principal_id FROM public.tep_presence ORDER BY fd;
SELECT count(*) AS workers FROM public.tep_presence_worker;
SELECT topic, seq FROM public.presence_topic_seq ORDER BY topic;
SELECT principal_id FROM pg_temp.tep_presence;
SELECT topic, seq FROM pg_temp.presence_topic_seq;
SELECT (SELECT count(*) FROM regress_evil.tep_presence)
     + (SELECT count(*) FROM regress_evil.tep_presence_worker)
     + (SELECT count(*) FROM regress_evil.presence_topic_seq) AS lookalike_rows;

-- Clean up.
DROP TABLE pg_temp.tep_presence, pg_temp.presence_topic_seq;
DROP SCHEMA regress_evil CASCADE;
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM regress_presence_app;
DROP ROLE regress_presence_nobody;
DROP ROLE regress_presence_app;
