-- Capture: the functions run with the caller's search_path (no SET clause),
-- so every name in their queries must be schema-qualified.  A role with a
-- schema of lookalikes first in its path (operators on every type our
-- queries compare, the functions they call) and temp tables named like ours
-- must see every function behave exactly as usual; any capture raises.
SET client_min_messages = warning;
CREATE ROLE regress_capture_app;
GRANT presence_app TO regress_capture_app;
GRANT EXECUTE ON FUNCTION presence_sweep_expired_status, presence_prune_dead_workers, presence_history_maintain TO regress_capture_app;
CREATE SCHEMA regress_capture AUTHORIZATION regress_capture_app;
-- Dead workers of every kind and an orphan entry, so that every query of
-- presence_prune_dead_workers runs under the hostile path below.
INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until) VALUES
  ('cap-dead-tep', 1, NULL, NULL, NULL, NULL),
  ('cap-dead-bound', 1, pg_backend_pid(), '2000-01-01', NULL, NULL),
  ('cap-dead-lease', 1, NULL, NULL, '1 s', now() - interval '1 s'),
  -- another role's dead worker, which worker_start takes over below
  ('cap-takeover', 1, NULL, NULL, '1 s', now() - interval '1 s');
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES
  ('cap-dead-tep', 't3', 1, 'u', 1), ('cap-dead-bound', 't3', 2, 'u', 1),
  ('cap-dead-lease', 't3', 3, 'u', 1), ('cap-orphan', 't3', 4, 'u', 1);
-- History on, with a past day's session in the default partition, so that
-- presence_history_maintain moves it (and every leave below records one).
SET presence.history = on;
INSERT INTO presence_history (topic, worker_id, fd, principal_id, kind, agent_id, meta, joined_ts, left_ts, reason)
  VALUES ('t', 'cap-old', 1, 'u', 'human', '', '{}', 1, trunc(extract(epoch FROM now()))::bigint - 86400, 'untrack');
-- ... a day past retention, which it drops, and a row past retention in
-- the default partition, which it deletes.
CREATE TABLE presence_history_20000101 PARTITION OF presence_history FOR VALUES FROM (946684800) TO (946771200);
INSERT INTO presence_history (topic, worker_id, fd, principal_id, kind, agent_id, meta, joined_ts, left_ts, reason)
  VALUES ('t', 'cap-2000', 1, 'u', 'human', '', '{}', 1, 946684900, 'untrack'),
         ('t', 'cap-1970', 1, 'u', 'human', '', '{}', 1, 100, 'untrack');
SET ROLE regress_capture_app;
CREATE FUNCTION regress_capture.boom2(text, text) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured text op'; END$$;
CREATE FUNCTION regress_capture.boomi(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured int op'; END$$;
CREATE FUNCTION regress_capture.boomb(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured bigint op'; END$$;
CREATE FUNCTION regress_capture.boombi(bigint, integer) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured bigint-int op'; END$$;
CREATE FUNCTION regress_capture.boomplus(bigint, integer) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured +'; END$$;
CREATE FUNCTION regress_capture.boomts(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured ts op'; END$$;
CREATE FUNCTION regress_capture.boomtsi(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured ts+interval'; END$$;
CREATE FUNCTION regress_capture.boomtid(tid, tid) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured tid op'; END$$;
CREATE OPERATOR regress_capture.= (leftarg = text, rightarg = text, function = regress_capture.boom2);
CREATE FUNCTION regress_capture.boomo(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured oid op'; END$$;
CREATE FUNCTION regress_capture.boomdiv(bigint, integer) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured /'; END$$;
CREATE OPERATOR regress_capture.= (leftarg = oid, rightarg = oid, function = regress_capture.boomo);
CREATE OPERATOR regress_capture.~ (leftarg = text, rightarg = text, function = regress_capture.boom2);
CREATE OPERATOR regress_capture.!~ (leftarg = text, rightarg = text, function = regress_capture.boom2);
CREATE OPERATOR regress_capture.<> (leftarg = integer, rightarg = integer, function = regress_capture.boomi);
CREATE OPERATOR regress_capture.<> (leftarg = timestamptz, rightarg = timestamptz, function = regress_capture.boomts);
CREATE OPERATOR regress_capture.< (leftarg = text, rightarg = text, function = regress_capture.boom2);
CREATE OPERATOR regress_capture./ (leftarg = bigint, rightarg = integer, function = regress_capture.boomdiv);
CREATE OPERATOR regress_capture.>= (leftarg = bigint, rightarg = integer, function = regress_capture.boombi);
CREATE OPERATOR regress_capture.< (leftarg = bigint, rightarg = integer, function = regress_capture.boombi);
CREATE FUNCTION regress_capture.max(bigint) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured max'; END$$;
CREATE FUNCTION regress_capture.min(bigint) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured min'; END$$;
CREATE FUNCTION regress_capture.min(integer) RETURNS integer LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured min'; END$$;
CREATE FUNCTION regress_capture.array_agg(jsonb) RETURNS jsonb[] LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured array_agg'; END$$;
CREATE OPERATOR regress_capture.= (leftarg = integer, rightarg = integer, function = regress_capture.boomi);
CREATE OPERATOR regress_capture.= (leftarg = tid, rightarg = tid, function = regress_capture.boomtid);
CREATE OPERATOR regress_capture.= (leftarg = timestamptz, rightarg = timestamptz, function = regress_capture.boomts);
CREATE OPERATOR regress_capture.> (leftarg = text, rightarg = text, function = regress_capture.boom2);
CREATE OPERATOR regress_capture.> (leftarg = bigint, rightarg = integer, function = regress_capture.boombi);
CREATE OPERATOR regress_capture.<= (leftarg = bigint, rightarg = bigint, function = regress_capture.boomb);
CREATE OPERATOR regress_capture.< (leftarg = bigint, rightarg = bigint, function = regress_capture.boomb);
CREATE OPERATOR regress_capture.>= (leftarg = bigint, rightarg = bigint, function = regress_capture.boomb);
CREATE OPERATOR regress_capture.< (leftarg = timestamptz, rightarg = timestamptz, function = regress_capture.boomts);
CREATE OPERATOR regress_capture.>= (leftarg = timestamptz, rightarg = timestamptz, function = regress_capture.boomts);
CREATE OPERATOR regress_capture.+ (leftarg = bigint, rightarg = integer, function = regress_capture.boomplus);
CREATE OPERATOR regress_capture.+ (leftarg = timestamptz, rightarg = interval, function = regress_capture.boomtsi);
CREATE FUNCTION regress_capture.count() RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured count'; END$$;
CREATE FUNCTION regress_capture.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured unnest'; END$$;
CREATE FUNCTION regress_capture.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured unnest'; END$$;
CREATE FUNCTION regress_capture.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured clock'; END$$;
CREATE FUNCTION regress_capture.pg_stat_get_activity(integer) RETURNS SETOF record LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured activity'; END$$;
CREATE FUNCTION regress_capture.pg_has_role(oid, oid, text) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'captured pg_has_role'; END$$;
CREATE TEMP TABLE tep_presence (x int);
CREATE TEMP TABLE tep_presence_worker (x int);
CREATE TEMP TABLE presence_topic_seq (x int);
CREATE TEMP TABLE presence_ended_worker (x int);
CREATE TEMP TABLE presence_history (x int);
CREATE TEMP TABLE presence_history_default (x int);
SET search_path = regress_capture, pg_temp, public, pg_catalog;
SELECT presence_worker_start('cap');
-- Registering again (the owner's check on the conflicting row), taking a
-- dead worker of another role over, and a track that registers its worker.
SELECT presence_worker_start('cap'), presence_worker_start('cap-takeover', '1 hour', takeover => true);
SELECT presence_track('t2', 9, 'u', worker_id => 'cap-new'), presence_worker_stop('cap-new'), presence_worker_stop('cap-takeover');
SELECT presence_worker_start('cap');
SELECT presence_worker_start('lease', '1 hour');
SELECT presence_heartbeat('lease'), presence_heartbeat();
SELECT presence_track('t', 1, 'u'), presence_track('t', 2, 'u', 'agent_for', 'a'), presence_track('t2', 1, 'u', meta => '{"name": "U"}');
SELECT presence_set_meta('t', 1, '{"name": "U"}'), presence_set_meta('t', 9, '{}');
SELECT principal_id, humans, agents, connections, state, meta FROM presence_principals('t');
SELECT presence_count_principals('t'), presence_last_seen('u') IS NOT NULL, presence_last_seen('u', 't') IS NOT NULL, presence_last_seen('nobody', 't');
SELECT presence_set_status('t', 1, 'busy', 'n', 1), presence_clear_status('t', 2);
SELECT presence_sweep_expired_status();
SELECT presence_count('t'), presence_count_humans('t'), presence_count_agents('t'), presence_count_global('t'), presence_count_humans_global('t'), presence_count_agents_global('t');
SELECT fd, status_state FROM presence_list('t');
SELECT pg_catalog.count(*) FROM presence_list_global('t');
SELECT (presence_find_entry('t', 1)).fd, presence_diff_topic('t'), presence_snapshot('t2') IS NOT NULL, presence_epoch() IS NOT NULL;
SELECT presence_untrack('t', 2), presence_untrack_by_fd(1), presence_clear();
SELECT presence_prune_dead_workers(), presence_worker_stop('lease'), presence_worker_stop();
-- The prune remembered the named bound worker; its id is refused, and
-- worker_stop forgets it.
\set VERBOSITY terse
SELECT presence_track('t', 3, 'u', worker_id => 'cap-dead-bound');
\set VERBOSITY default
SELECT presence_worker_stop('cap-dead-bound');
SELECT pg_catalog.count(*) AS dead_left FROM presence_list_global('t3');
SELECT presence_last_seen('u') IS NOT NULL AS seen, presence_last_seen('u', 't3') IS NOT NULL AS seen_t3;
SELECT presence_history_maintain();
SELECT worker_id, fd, reason FROM presence_history('t', 0, 9223372036854775807) ORDER BY worker_id, fd, reason;
-- The seq of each topic counts exactly the diffs above.
RESET ROLE;
RESET search_path;
RESET presence.history;
SELECT topic, seq FROM public.presence_topic_seq ORDER BY topic;
-- The past day's row left the default partition for its own.
SELECT count(*) AS in_default FROM public.presence_history_default;
SELECT count(*) AS day_partitions FROM pg_inherits WHERE inhparent = 'public.presence_history'::regclass;
SELECT to_regclass('public.presence_history_20000101') IS NULL AS old_day_dropped,
       (SELECT count(*) FROM public.presence_history WHERE worker_id = 'cap-1970') AS old_default_rows;
SELECT pg_catalog.count(*) AS in_its_day FROM public.presence_history
 WHERE worker_id = 'cap-old' AND tableoid::regclass::text = 'presence_history_' || to_char(to_timestamp(left_ts) AT TIME ZONE 'UTC', 'YYYYMMDD');
SELECT topic, reason, count(*) FROM public.presence_history GROUP BY 1, 2 ORDER BY 1, 2;
DELETE FROM public.presence_history;
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits
              WHERE inhparent = 'public.presence_history'::regclass
                AND inhrelid <> 'public.presence_history_default'::regclass
    LOOP
        EXECUTE format('DROP TABLE %s', p);
    END LOOP;
END
$$;
DROP SCHEMA regress_capture CASCADE;
DROP OWNED BY regress_capture_app;
DROP ROLE regress_capture_app;
