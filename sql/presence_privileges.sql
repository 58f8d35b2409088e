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
 WHERE c.relkind IN ('r', 'p');

SELECT t FROM ext_tables ORDER BY t::text;

-- Every function: no EXECUTE for PUBLIC (no ACL entry with grantee 0);
-- none is SECURITY DEFINER (1.1: the C code does its work as the tables'
-- owner, the caller being GetUserId(); src/args.c).  The one
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
SELECT pg_temp.try($$SELECT count(*) FROM presence_history('room', 0, 1)$$);
SELECT pg_temp.try($$SELECT presence_last_seen('p')$$);
SELECT pg_temp.try($$SELECT count(*) FROM presence_principals('room')$$);
SELECT pg_temp.try($$SELECT count(*) FROM presence_history$$);
SELECT pg_temp.try($$SELECT count(*) FROM presence_history_default$$);
RESET ROLE;
SELECT count(*) AS entries FROM tep_presence;

-- The README's one GRANT: the predefined role presence_app.  What it does
-- not give is the maintenance (test presence_app_role), which this file
-- grants too, to run it under the hostile search_path below.
GRANT presence_app TO regress_presence_app;
SELECT f FROM ext_functions
 WHERE NOT has_function_privilege('regress_presence_app', f, 'EXECUTE')
 ORDER BY f::text;
GRANT EXECUTE ON FUNCTION presence_sweep_expired_status, presence_prune_dead_workers,
  presence_history_maintain, presence_remove_idle_topics TO regress_presence_app;
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
-- History on for the session (a superuser's setting), so that the app's
-- leaves below are recorded.
SET presence.history = on;
SET ROLE regress_presence_app;
-- ... and the app cannot turn it off.
SELECT pg_temp.try($$SET presence.history = off$$);
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
-- 1.1's functions, through the same search_path.
SELECT presence_track('room', 5, 'user:app', worker_id => 'gw-app', meta => '{"name": "App"}');
SELECT presence_set_meta('room', 5, '{"name": "App 2"}', 'gw-app');
SELECT principal_id, humans, agents, connections, state, meta FROM presence_principals('room');
SELECT presence_count_principals('room');
SELECT presence_untrack('room', 5, 'gw-app');
SELECT presence_last_seen('user:app') IS NOT NULL AS seen, presence_last_seen('user:nobody') AS never;
SELECT principal_id, fd, reason FROM presence_history('room', 0, 9223372036854775807) ORDER BY reason, fd;
SELECT presence_history_maintain() >= 0 AS maintained;
-- The app still cannot read the real tables directly.
SELECT pg_temp.try($$SELECT count(*) FROM public.tep_presence$$);
SELECT pg_temp.try($$SELECT count(*) FROM public.presence_history$$);
SELECT pg_temp.try($$DELETE FROM public.presence_history RETURNING 1$$);
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

----------------------------------------------------------------------------
-- Worker ownership: a worker id belongs to the role that registered it.
-- Another role naming it in a change gets 42501 and changes nothing; the
-- owner's members (with its privileges), superusers and roles writing the
-- tables directly may.  Reads (list, count, find_entry) are not checked:
-- list_global, the snapshot and every NOTIFY show all workers' entries
-- to any role anyway.
----------------------------------------------------------------------------
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
CREATE ROLE regress_presence_gw1 IN ROLE regress_presence_app;
CREATE ROLE regress_presence_gw2 IN ROLE regress_presence_app;
CREATE ROLE regress_presence_gw1_member IN ROLE regress_presence_gw1;
CREATE ROLE regress_presence_gw1_noinherit NOINHERIT IN ROLE regress_presence_gw1;
CREATE ROLE regress_presence_tep;
GRANT EXECUTE ON FUNCTION presence_track, presence_untrack,
  presence_set_status(text, integer, text, text, bigint, text),
  presence_heartbeat, presence_worker_start, presence_worker_stop
  TO regress_presence_gw1_noinherit;
GRANT SELECT, INSERT, UPDATE, DELETE ON tep_presence, tep_presence_worker
  TO regress_presence_tep;
-- This connection's worker id: pg-<backend pid>-<backend start, epoch s>.
CREATE FUNCTION pg_temp.conn_id() RETURNS text LANGUAGE sql AS
$$ SELECT 'pg-' || pid || '-' || trunc(extract(epoch FROM backend_start))::bigint
     FROM pg_stat_activity WHERE pid = pg_backend_pid() $$;
-- Everything a change could touch: entries, workers with their owners, seqs.
CREATE FUNCTION pg_temp.state() RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws(' | ',
    (SELECT string_agg(concat_ws(',', worker_id, topic, fd, status_state), ' ' ORDER BY 1)
       FROM public.tep_presence),
    (SELECT string_agg(concat_ws(',', worker_id, owner, last_seen_ts, lease_until), ' ' ORDER BY 1)
       FROM public.tep_presence_worker),
    (SELECT string_agg(topic || '=' || seq, ' ' ORDER BY 1) FROM public.presence_topic_seq))
$$;

-- gw1 registers two workers: one with worker_start (leased), one by its
-- first track.
SET ROLE regress_presence_gw1;
SELECT presence_worker_start('gw-one', interval '1 hour');
SELECT presence_track('own', 1, 'user:1', worker_id => 'gw-one');
SELECT presence_track('own', 2, 'user:2', worker_id => 'gw-one');
SELECT presence_track('own', 3, 'user:3', worker_id => 'gw-track');
RESET ROLE;
SELECT worker_id, owner FROM tep_presence_worker ORDER BY worker_id;

-- gw2 may name neither in a change: 42501, nothing changed, no diff (the
-- seqs count committed diffs).
SELECT pg_temp.state() AS before \gset
SET ROLE regress_presence_gw2;
SELECT presence_untrack('own', 1, 'gw-one');
SELECT pg_temp.try($$SELECT presence_track('own', 9, 'user:9', worker_id => 'gw-one')$$) AS track;
SELECT pg_temp.try($$SELECT presence_track('own', 9, 'user:9', worker_id => 'gw-track')$$) AS track_registered_by_track;
SELECT pg_temp.try($$SELECT presence_untrack_by_fd(1, 'gw-one')$$) AS untrack_by_fd;
SELECT pg_temp.try($$SELECT presence_set_status('own', 1, 'busy', 'n', 0, 'gw-one')$$) AS set_status;
SELECT pg_temp.try($$SELECT presence_clear_status('own', 1, 'gw-one')$$) AS clear_status;
SELECT pg_temp.try($$SELECT presence_clear('gw-one')$$) AS clear;
SELECT pg_temp.try($$SELECT presence_heartbeat('gw-one')$$) AS heartbeat;
SELECT pg_temp.try($$SELECT presence_worker_stop('gw-one')$$) AS worker_stop;
SELECT pg_temp.try($$SELECT presence_worker_start('gw-one')$$) AS worker_start;
SELECT pg_temp.try($$SELECT presence_worker_start('gw-one', interval '1 minute')$$) AS worker_start_lease;
-- Also when the entry does not exist, and through presence.worker_id.
SELECT pg_temp.try($$SELECT presence_untrack('own', 99, 'gw-one')$$) AS untrack_missing;
SET presence.worker_id = 'gw-one';
SELECT pg_temp.try($$SELECT presence_untrack('own', 1)$$) AS untrack_via_guc;
SELECT pg_temp.try($$SELECT presence_worker_stop()$$) AS worker_stop_via_guc;
RESET presence.worker_id;
-- Reads are not checked.
SELECT fd FROM presence_list('own', 'gw-one');
SELECT presence_count('own', 'gw-one') AS count, presence_count_humans('own', 'gw-one') AS humans,
       presence_count_agents('own', 'gw-one') AS agents;
SELECT (presence_find_entry('own', 1, 'gw-one')).principal_id;
RESET ROLE;
SELECT pg_temp.state() = :'before' AS unchanged;

-- A NOINHERIT member does not have gw1's privileges: refused too.
SET ROLE regress_presence_gw1_noinherit;
SELECT pg_temp.try($$SELECT presence_set_status('own', 1, 'busy', 'n', 0, 'gw-one')$$) AS noinherit_set_status;
SELECT pg_temp.try($$SELECT presence_heartbeat('gw-one')$$) AS noinherit_heartbeat;
RESET ROLE;
SELECT pg_temp.state() = :'before' AS unchanged;

-- gw1 itself and its member may; worker_start by either keeps the owner.
SET ROLE regress_presence_gw1_member;
SELECT presence_set_status('own', 1, 'busy', 'member', 0, 'gw-one') AS member_set_status;
SELECT presence_heartbeat('gw-one') AS member_heartbeat;
SELECT presence_track('own', 4, 'user:4', worker_id => 'gw-one') AS member_track;
SELECT presence_untrack('own', 4, 'gw-one') AS member_untrack;
SELECT presence_worker_start('gw-track', interval '1 hour') AS member_restart;
RESET presence.worker_id;
SET ROLE regress_presence_gw1;
SELECT presence_clear_status('own', 1, 'gw-one') AS owner_clear_status;
SELECT presence_track('own', 3, 'user:3', worker_id => 'gw-track') AS owner_track;
RESET ROLE;
SELECT worker_id, owner FROM tep_presence_worker ORDER BY worker_id;

-- Superusers are outside ownership; their worker_start keeps the owner.
SELECT presence_set_status('own', 2, 'blocked', 'su', 0, 'gw-one') AS superuser_set_status;
SELECT presence_heartbeat('gw-track') AS superuser_heartbeat;
SELECT presence_worker_start('gw-track', interval '1 hour') AS superuser_restart;
RESET presence.worker_id;
SELECT worker_id, owner FROM tep_presence_worker ORDER BY worker_id;

-- A dead worker of another role is not revived, but worker_start takes it
-- over: its entries leave and the caller owns it.
SET ROLE regress_presence_gw1;
SELECT presence_track('own', 5, 'user:5', worker_id => 'gw-one');
RESET ROLE;
UPDATE tep_presence_worker SET lease_until = clock_timestamp() - interval '1 s'
 WHERE worker_id = 'gw-one';
SET ROLE regress_presence_gw2;
SELECT pg_temp.try($$SELECT presence_heartbeat('gw-one')$$) AS heartbeat_dead;
SELECT pg_temp.try($$SELECT presence_untrack('own', 5, 'gw-one')$$) AS untrack_dead;
SELECT presence_worker_start('gw-one', interval '1 hour') AS takeover;
RESET presence.worker_id;
SELECT presence_track('own', 6, 'user:6', worker_id => 'gw-one') AS gw2_tracks;
RESET ROLE;
SELECT worker_id, owner FROM tep_presence_worker ORDER BY worker_id;
SELECT worker_id, fd FROM tep_presence ORDER BY worker_id, fd;
SET ROLE regress_presence_gw1;
SELECT pg_temp.try($$SELECT presence_untrack('own', 6, 'gw-one')$$) AS gw1_now_refused;
RESET ROLE;

-- A worker with no owner (a row from 1.0, or written with owner NULL) is
-- anyone's; worker_start gives it one.
INSERT INTO tep_presence_worker (worker_id, last_seen_ts, owner)
VALUES ('gw-unowned', trunc(extract(epoch FROM now())), NULL);
SET ROLE regress_presence_gw2;
SELECT presence_heartbeat('gw-unowned') AS unowned_heartbeat;
SELECT presence_track('own', 7, 'user:7', worker_id => 'gw-unowned') AS unowned_track;
SELECT presence_worker_start('gw-unowned', interval '1 hour') AS unowned_start;
RESET presence.worker_id;
RESET ROLE;
SELECT owner FROM tep_presence_worker WHERE worker_id = 'gw-unowned';

-- Tep's direct writers hold table privileges, which bypass ownership: a
-- row they insert is theirs (the column's default), and they change any
-- row directly.
SET ROLE regress_presence_tep;
INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
VALUES ('tep-w', trunc(extract(epoch FROM now())));
SELECT owner FROM tep_presence_worker WHERE worker_id = 'tep-w';
DELETE FROM tep_presence WHERE worker_id = 'gw-one' RETURNING fd AS tep_deleted;
RESET ROLE;
SET ROLE regress_presence_gw2;
SELECT pg_temp.try($$SELECT presence_heartbeat('tep-w')$$) AS heartbeat_tep_row;
RESET ROLE;

-- Connection-bound ids: only from their own connection, whatever the role
-- and whether or not registered; superusers may.
SELECT pg_temp.conn_id() AS conn_id \gset
\set ECHO none
SELECT format($f$CREATE FUNCTION pg_temp.mask(t text) RETURNS text LANGUAGE sql
  AS $$ SELECT replace(t, %L, '<this connection>') $$$f$, :'conn_id') \gexec
\set ECHO all
SET ROLE regress_presence_gw2;
SELECT presence_worker_start() = :'conn_id' AS own_conn_id;
SELECT presence_track('own', 8, 'user:8') AS own_conn_track;
SELECT pg_temp.try($$SELECT presence_track('own', 1, 'user:1', worker_id => 'pg-1-1')$$) AS other_conn_track;
SELECT pg_temp.try($$SELECT presence_worker_start('pg-1-1')$$) AS other_conn_start;
SELECT pg_temp.try($$SELECT presence_heartbeat('pg-1-1')$$) AS other_conn_heartbeat;
SELECT pg_temp.try($$SELECT presence_worker_stop('pg-1-1')$$) AS other_conn_stop;
SELECT pg_temp.try($$SELECT presence_untrack_by_fd(1, 'pg-1-1')$$) AS other_conn_untrack_by_fd;
SELECT count(*) AS other_conn_list FROM presence_list('own', 'pg-1-1');
-- Ids that only look similar are ordinary ids.
SELECT presence_track('own', 1, 'user:1', worker_id => 'pg-1-1x') AS not_conn_form;
RESET ROLE;
SELECT presence_track('own', 1, 'user:1', worker_id => 'pg-1-1') AS superuser_other_conn;
-- The connection's own worker still belongs to the role that registered
-- it: after SET ROLE to another role, the connection may not use it.
SET ROLE regress_presence_gw1;
SELECT pg_temp.mask(pg_temp.try($$SELECT presence_untrack('own', 8)$$)) AS own_conn_other_role;
SELECT pg_temp.mask(pg_temp.try($$SELECT presence_worker_start()$$)) AS own_conn_other_role_start;
RESET ROLE;
SELECT pg_temp.mask(worker_id) AS worker_id,
       CASE WHEN owner::oid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
            THEN '<superuser>' ELSE owner::text END AS owner
  FROM tep_presence_worker WHERE worker_id LIKE 'pg-%' ORDER BY 1;
RESET presence.worker_id;
SELECT presence_worker_stop(:'conn_id');

-- gw1's worker, which gw2's code below tries to change.
SET ROLE regress_presence_gw1;
SELECT presence_worker_start('gw-victim', interval '1 hour') AS victim;
SELECT presence_track('victim', 1, 'user:1', worker_id => 'gw-victim') AS victim_tracks;
RESET presence.worker_id;
RESET ROLE;
-- A security-restricted operation never acts with the session's rights:
-- ANALYZE, run by a superuser, evaluates gw2's index expression as gw2,
-- and a change there is refused whoever's worker it names.
CREATE SCHEMA regress_s2 AUTHORIZATION regress_presence_gw2;
SET ROLE regress_presence_gw2;
CREATE FUNCTION regress_s2.evil(a integer) RETURNS integer
  LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('regress.armed', true) = 'on' THEN
        PERFORM public.presence_set_status('victim', 1, 'busy', 'analyzed', 0, 'gw-victim');
    END IF;
    RETURN a;
END
$$;
CREATE TABLE regress_s2.t (a integer);
CREATE INDEX ON regress_s2.t (regress_s2.evil(a));
INSERT INTO regress_s2.t SELECT generate_series(1, 10);
RESET ROLE;
SET regress.armed = on;
ANALYZE regress_s2.t;
RESET regress.armed;
SELECT worker_id, status_state, status_note FROM tep_presence WHERE topic = 'victim';
-- The role a call acts for is the one PostgreSQL checks privileges for
-- (GetUserId()): a SECURITY DEFINER function owned by gw2 acts for gw2,
-- also when a superuser calls it.
CREATE FUNCTION public.regress_gw2_stop(w text) RETURNS integer
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT public.presence_worker_stop(w) $$;
ALTER FUNCTION public.regress_gw2_stop(text) OWNER TO regress_presence_gw2;
SELECT pg_temp.try($$SELECT public.regress_gw2_stop('gw-victim')$$) AS gw2_definer_called_by_superuser;
SELECT worker_id, status_state FROM tep_presence WHERE topic = 'victim';
DROP SCHEMA regress_s2 CASCADE;
DROP FUNCTION public.regress_gw2_stop(text);


DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
RESET presence.history;
DELETE FROM presence_history;
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits
              WHERE inhparent = 'presence_history'::regclass
                AND inhrelid <> 'presence_history_default'::regclass
    LOOP
        EXECUTE format('DROP TABLE %s', p);
    END LOOP;
END
$$;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM regress_presence_app;
REVOKE ALL ON FUNCTION presence_track, presence_untrack,
  presence_set_status(text, integer, text, text, bigint, text),
  presence_heartbeat, presence_worker_start, presence_worker_stop
  FROM regress_presence_gw1_noinherit;
REVOKE ALL ON tep_presence, tep_presence_worker FROM regress_presence_tep;
DROP ROLE regress_presence_gw1_member, regress_presence_gw1_noinherit,
  regress_presence_gw1, regress_presence_gw2, regress_presence_tep;
DROP ROLE regress_presence_nobody;
DROP ROLE regress_presence_app;
