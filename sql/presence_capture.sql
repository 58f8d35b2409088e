-- Capture: the functions run with the caller's search_path (no SET clause),
-- so every name in their queries must be schema-qualified.  A role with a
-- schema of lookalikes first in its path (operators on every type our
-- queries compare, the functions they call) and temp tables named like ours
-- must see every function behave exactly as usual; any capture raises.
SET client_min_messages = warning;
CREATE ROLE regress_capture_app;
GRANT EXECUTE ON FUNCTION presence_track, presence_untrack, presence_untrack_by_fd, presence_list, presence_list_global, presence_count, presence_count_humans, presence_count_agents, presence_count_global, presence_count_humans_global, presence_count_agents_global, presence_set_status, presence_clear_status, presence_find_entry, presence_sweep_expired_status, presence_clear, presence_diff_topic, presence_snapshot, presence_epoch, presence_worker_start, presence_heartbeat, presence_worker_stop, presence_prune_dead_workers TO regress_capture_app;
CREATE SCHEMA regress_capture AUTHORIZATION regress_capture_app;
-- Dead workers of every kind and an orphan entry, so that every query of
-- presence_prune_dead_workers runs under the hostile path below.
INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until) VALUES
  ('cap-dead-tep', 1, NULL, NULL, NULL, NULL),
  ('cap-dead-bound', 1, pg_backend_pid(), '2000-01-01', NULL, NULL),
  ('cap-dead-lease', 1, NULL, NULL, '1 s', now() - interval '1 s');
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES
  ('cap-dead-tep', 't3', 1, 'u', 1), ('cap-dead-bound', 't3', 2, 'u', 1),
  ('cap-dead-lease', 't3', 3, 'u', 1), ('cap-orphan', 't3', 4, 'u', 1);
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
CREATE TEMP TABLE tep_presence (x int);
CREATE TEMP TABLE tep_presence_worker (x int);
CREATE TEMP TABLE presence_topic_seq (x int);
SET search_path = regress_capture, pg_temp, public, pg_catalog;
SELECT presence_worker_start('cap');
SELECT presence_worker_start('lease', '1 hour');
SELECT presence_heartbeat('lease'), presence_heartbeat();
SELECT presence_track('t', 1, 'u'), presence_track('t', 2, 'u', 'agent_for', 'a'), presence_track('t2', 1, 'u');
SELECT presence_set_status('t', 1, 'busy', 'n', 1), presence_clear_status('t', 2);
SELECT presence_sweep_expired_status();
SELECT presence_count('t'), presence_count_humans('t'), presence_count_agents('t'), presence_count_global('t'), presence_count_humans_global('t'), presence_count_agents_global('t');
SELECT fd, status_state FROM presence_list('t');
SELECT pg_catalog.count(*) FROM presence_list_global('t');
SELECT (presence_find_entry('t', 1)).fd, presence_diff_topic('t'), presence_snapshot('t2') IS NOT NULL, presence_epoch() IS NOT NULL;
SELECT presence_untrack('t', 2), presence_untrack_by_fd(1), presence_clear();
SELECT presence_prune_dead_workers(), presence_worker_stop('lease'), presence_worker_stop();
SELECT pg_catalog.count(*) AS dead_left FROM presence_list_global('t3');
-- The seq of each topic counts exactly the diffs above.
RESET ROLE;
RESET search_path;
SELECT topic, seq FROM public.presence_topic_seq ORDER BY topic;
DROP SCHEMA regress_capture CASCADE;
DROP OWNED BY regress_capture_app;
DROP ROLE regress_capture_app;
