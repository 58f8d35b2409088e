--
-- presence_workers: worker identity (connection-bound default, the
-- presence.worker_id GUC, explicit ids), worker_start, heartbeat,
-- worker_stop and prune_dead_workers.
--
SET client_min_messages = warning;

-- Start from empty tables (other files may leave rows behind).
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

CREATE FUNCTION pg_temp.seq(t text) RETURNS bigint LANGUAGE sql AS
$$ SELECT coalesce((SELECT seq FROM presence_topic_seq WHERE topic = t), 0) $$;
CREATE FUNCTION pg_temp.now_s() RETURNS bigint LANGUAGE sql AS
$$ SELECT trunc(extract(epoch FROM now()))::bigint $$;
-- This connection's worker id: pg-<backend pid>-<backend start, epoch s>.
CREATE FUNCTION pg_temp.conn_id() RETURNS text LANGUAGE sql AS
$$ SELECT 'pg-' || pid || '-' || trunc(extract(epoch FROM backend_start))::bigint
     FROM pg_stat_activity WHERE pid = pg_backend_pid() $$;
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
-- A statement's error: SQLSTATE, message, detail and hint.
CREATE FUNCTION pg_temp.full_error(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text; msg text; detail text; hint text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN format(E'%s: %s\nDETAIL: %s\nHINT: %s', state, msg, detail, hint);
END
$$;
-- A worker row, normalised: kind of worker and whether times are fresh.
CREATE FUNCTION pg_temp.worker(id text)
RETURNS TABLE (kind text, last_seen_fresh boolean, lease interval,
               lease_until_ahead interval)
LANGUAGE sql AS $$
  SELECT CASE WHEN backend_pid = pg_backend_pid()
               AND backend_start = (SELECT backend_start FROM pg_stat_activity
                                     WHERE pid = pg_backend_pid())
              THEN 'bound to this connection'
              WHEN backend_pid IS NOT NULL THEN 'bound elsewhere'
              WHEN lease IS NOT NULL THEN 'leased'
              ELSE 'heartbeat' END,
         last_seen_ts BETWEEN trunc(extract(epoch FROM now())) - 1
                          AND trunc(extract(epoch FROM clock_timestamp())),
         lease,
         date_trunc('second', lease_until - clock_timestamp()
                              + interval '500 ms')
    FROM tep_presence_worker WHERE worker_id = id
$$;

-- Without preloading, the extension's settings exist once it is loaded.
LOAD 'presence';
SHOW presence.worker_id;

----------------------------------------------------------------------------
-- The default worker: bound to this connection, registered on first use.
----------------------------------------------------------------------------
SELECT count(*) FROM tep_presence_worker;
-- Reads do not register it.
SELECT presence_count('t1'), count(*) AS workers FROM tep_presence_worker;
SELECT presence_track('t1', 1, 'user:1');
SELECT worker_id = pg_temp.conn_id() AS is_conn_id FROM tep_presence;
SELECT worker_id = pg_temp.conn_id() AS is_conn_id, w.*
  FROM tep_presence_worker, pg_temp.worker(worker_id) w;
SELECT presence_count('t1') AS mine, presence_count('t1', pg_temp.conn_id()) AS by_id;
SELECT fd FROM presence_list('t1');
-- A second track does not register again or change the row.
SELECT presence_track('t1', 2, 'user:1');
SELECT count(*) AS workers FROM tep_presence_worker;

----------------------------------------------------------------------------
-- An explicit worker id, or the GUC's, is registered as a heartbeat
-- worker (no backend, no lease, last_seen_ts = now).
----------------------------------------------------------------------------
BEGIN;
SELECT presence_track('t1', 1, 'user:2', worker_id => 'app-1');
SELECT * FROM pg_temp.worker('app-1');
SELECT last_seen_ts = pg_temp.now_s() AS seen_now
  FROM tep_presence_worker WHERE worker_id = 'app-1';
COMMIT;
SET presence.worker_id = 'app-guc';
SELECT presence_track('t1', 1, 'user:3');
RESET presence.worker_id;
SELECT * FROM pg_temp.worker('app-guc');
SELECT CASE WHEN worker_id = pg_temp.conn_id() THEN '<this connection>'
            ELSE worker_id END AS worker, fd, principal_id
  FROM presence_list_global('t1') ORDER BY principal_id, fd;
SELECT presence_count_global('t1') AS global, presence_count('t1') AS mine,
       presence_count('t1', 'app-1') AS app1,
       presence_count('t1', 'app-guc') AS appguc;

----------------------------------------------------------------------------
-- presence_heartbeat
----------------------------------------------------------------------------
-- Connection-bound: always alive.
SELECT presence_heartbeat() AS bound;
SELECT presence_heartbeat(pg_temp.conn_id()) AS bound_by_id;
-- Heartbeat worker, fresh: true.
SELECT presence_heartbeat('app-1') AS fresh;
-- Lapsed (older than presence.worker_ttl): false, but refreshed.
UPDATE tep_presence_worker SET last_seen_ts = 1000 WHERE worker_id = 'app-1';
SELECT presence_heartbeat('app-1') AS lapsed;
SELECT * FROM pg_temp.worker('app-1');
SELECT presence_heartbeat('app-1') AS fresh_again;
-- Through the GUC.
SET presence.worker_id = 'app-1';
SELECT presence_heartbeat() AS via_guc;
-- An unknown id is an error, explicit or from the GUC.
SET presence.worker_id = 'ghost';
SELECT pg_temp.try('SELECT presence_heartbeat()');
RESET presence.worker_id;
SELECT pg_temp.try($$SELECT presence_heartbeat('ghost')$$);
SELECT count(*) AS ghost_rows FROM tep_presence_worker WHERE worker_id = 'ghost';

----------------------------------------------------------------------------
-- presence_worker_start
----------------------------------------------------------------------------
-- Restarting app-1 (bound to this connection) drops its entries (one leave
-- diff) and makes it the session's worker.
SELECT pg_temp.seq('t1') AS seq_before;
SELECT presence_worker_start('app-1');
SHOW presence.worker_id;
SELECT * FROM pg_temp.worker('app-1');
SELECT count(*) AS app1_entries FROM tep_presence WHERE worker_id = 'app-1';
SELECT pg_temp.seq('t1') AS seq_after;
-- Now the default worker of this session.
SELECT presence_track('t2', 7, 'user:7');
SELECT worker_id FROM tep_presence WHERE topic = 't2';
SELECT presence_heartbeat() AS bound_alive;
-- A lease is positive as a whole: a day less an hour is 23 hours.
SELECT presence_worker_start('app-mixed', interval '1 day -1 hour') AS mixed_lease;
SELECT lease FROM tep_presence_worker WHERE worker_id = 'app-mixed';
SELECT presence_worker_stop('app-mixed') AS mixed_stopped;
-- With a lease: alive while heartbeats come within it.
SELECT presence_worker_start('app-lease', interval '30 seconds');
SHOW presence.worker_id;
SELECT * FROM pg_temp.worker('app-lease');
SELECT presence_track('t2', 8, 'user:8');
SELECT presence_heartbeat() AS within_lease;
UPDATE tep_presence_worker SET lease_until = clock_timestamp() - interval '1 s'
 WHERE worker_id = 'app-lease';
SELECT presence_heartbeat('app-lease') AS lapsed_lease;
SELECT * FROM pg_temp.worker('app-lease');
-- Starting it again with a lease turns a bound worker into a leased one
-- and the reverse.
SELECT presence_worker_start('app-1', interval '1 hour');
SELECT * FROM pg_temp.worker('app-1');
SELECT presence_worker_start('app-1');
SELECT * FROM pg_temp.worker('app-1');
-- With no id: the connection's own id, which it drops entries of too.
SELECT pg_temp.seq('t1') AS seq_before;
SELECT presence_worker_start() = pg_temp.conn_id() AS is_conn_id;
SELECT current_setting('presence.worker_id') = pg_temp.conn_id() AS guc_is_conn_id;
SELECT count(*) AS conn_entries FROM tep_presence
 WHERE worker_id = pg_temp.conn_id();
SELECT pg_temp.seq('t1') AS seq_after;
SELECT kind FROM pg_temp.worker(pg_temp.conn_id());
-- worker_start's GUC change is transactional like SET.
BEGIN;
SELECT presence_worker_start('app-rolled-back');
ROLLBACK;
SELECT current_setting('presence.worker_id') = pg_temp.conn_id() AS unchanged;
SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'app-rolled-back';
RESET presence.worker_id;
-- Heartbeat of the connection's id with no GUC and no row registers it.
SELECT presence_worker_stop();
SELECT count(*) FROM tep_presence_worker WHERE worker_id = pg_temp.conn_id();
SELECT presence_heartbeat() AS registered;
SELECT kind FROM pg_temp.worker(pg_temp.conn_id());

----------------------------------------------------------------------------
-- presence_worker_stop
----------------------------------------------------------------------------
SELECT presence_track('t1', 1, 'a', worker_id => 'app-stop');
SELECT presence_track('t2', 1, 'a', worker_id => 'app-stop');
SELECT presence_track('t2', 2, 'a', worker_id => 'app-stop');
SELECT pg_temp.seq('t1') AS t1, pg_temp.seq('t2') AS t2;
SET presence.worker_id = 'app-stop';
SELECT presence_worker_stop('app-stop');
SHOW presence.worker_id;
SELECT count(*) AS rows_left FROM tep_presence_worker WHERE worker_id = 'app-stop';
SELECT count(*) AS entries_left FROM tep_presence WHERE worker_id = 'app-stop';
SELECT pg_temp.seq('t1') AS t1, pg_temp.seq('t2') AS t2;
-- Stopping it again: unknown.
SELECT pg_temp.try($$SELECT presence_worker_stop('app-stop')$$);
-- A row without entries: 0.  Entries without a row: counted.
SELECT presence_worker_start('app-empty', interval '1 min');
SELECT presence_worker_stop('app-empty');
SHOW presence.worker_id;
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
VALUES ('app-orphan', 't3', 1, 'x', 1);
SELECT presence_worker_stop('app-orphan');
-- The session's worker is left alone when another id is stopped.
SET presence.worker_id = 'app-lease';
SELECT presence_worker_stop('app-1');
SHOW presence.worker_id;
RESET presence.worker_id;

----------------------------------------------------------------------------
-- presence_prune_dead_workers: in one transaction, so that a background
-- worker cannot prune the fixture first.
----------------------------------------------------------------------------
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
BEGIN;
INSERT INTO tep_presence_worker
  (worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until) VALUES
  ('lease-dead', 1, NULL, NULL, '10 s', clock_timestamp() - interval '1 s'),
  ('lease-live', 1, NULL, NULL, '10 s', clock_timestamp() + interval '1 h'),
  ('tep-dead', pg_temp.now_s() - 100000, NULL, NULL, NULL, NULL),
  ('tep-live', pg_temp.now_s(), NULL, NULL, NULL, NULL),
  -- this backend's pid with another start time: a backend that is gone
  ('bound-dead', pg_temp.now_s(), pg_backend_pid(), '2000-01-01', NULL, NULL),
  ('bound-live', 1, pg_backend_pid(),
   (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),
   NULL, NULL),
  ('no-entries-dead', 1, NULL, NULL, NULL, NULL);
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
SELECT w, t, 1, 'p', 1
  FROM unnest(ARRAY['lease-dead', 'lease-live', 'tep-dead', 'tep-live',
                    'bound-dead', 'bound-live', 'orphan']) AS w,
       unnest(ARRAY['pa', 'pb']) AS t;
SELECT pg_temp.seq('pa') AS pa, pg_temp.seq('pb') AS pb;
SELECT presence_prune_dead_workers() AS pruned;
SELECT worker_id, count(*) FROM tep_presence GROUP BY 1 ORDER BY 1;
SELECT worker_id FROM tep_presence_worker ORDER BY 1;
-- Seqs are given at commit.
SELECT pg_temp.seq('pa') AS pa, pg_temp.seq('pb') AS pb;
-- A live bound worker's last_seen_ts is kept fresh for Tep's own pruning.
SELECT last_seen_fresh FROM pg_temp.worker('bound-live');
SELECT presence_prune_dead_workers() AS pruned_again;
COMMIT;
-- One leave diff per entry: 4 dead workers x 1 entry in each topic.
SELECT pg_temp.seq('pa') AS pa, pg_temp.seq('pb') AS pb;

----------------------------------------------------------------------------
-- presence_worker_start refuses a live worker bound to another connection
-- (55006, naming its pid), whatever the role, unless takeover => true.
-- The other connection here is the checkpointer's: a live backend of
-- pg_stat_activity (test/isolation/specs/worker_takeover.spec has two
-- real sessions).
----------------------------------------------------------------------------
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_ended_worker;
INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid, backend_start)
SELECT 'gw-held', pg_temp.now_s(), pid, backend_start
  FROM pg_stat_activity WHERE backend_type = 'checkpointer';
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
VALUES ('gw-held', 'held', 1, 'p', 1);
CREATE FUNCTION pg_temp.try_held(q text) RETURNS text LANGUAGE sql AS
$$ SELECT replace(pg_temp.try(q),
                  (SELECT pid::text FROM pg_stat_activity WHERE backend_type = 'checkpointer'),
                  '<checkpointer pid>') $$;
SELECT pg_temp.try_held($$SELECT presence_worker_start('gw-held')$$) AS start_held;
SELECT pg_temp.try_held($$SELECT presence_worker_start('gw-held', interval '1 hour')$$) AS start_held_leased;
SELECT pg_temp.try_held($$SELECT presence_worker_start('gw-held', takeover => false)$$) AS start_held_no_takeover;
SELECT replace(pg_temp.full_error($$SELECT presence_worker_start('gw-held')$$),
               (SELECT pid::text FROM pg_stat_activity WHERE backend_type = 'checkpointer'),
               '<checkpointer pid>') AS error;
-- Refused: nothing changed.
SELECT * FROM pg_temp.worker('gw-held');
SELECT count(*) AS held_entries FROM tep_presence WHERE worker_id = 'gw-held';
-- Taken over: bound to this connection, its entries gone.
SELECT presence_worker_start('gw-held', takeover => true) AS taken_over;
SELECT kind FROM pg_temp.worker('gw-held');
SELECT count(*) AS held_entries FROM tep_presence WHERE worker_id = 'gw-held';
-- Started again from its own connection: no takeover needed.
SELECT presence_worker_start('gw-held') AS restarted_here;
-- A dead bound worker, a leased or a heartbeat one need none either.
INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until) VALUES
  ('gw-held-dead', 1, pg_backend_pid(), '2000-01-01', NULL, NULL),
  ('gw-held-lease', 1, NULL, NULL, '1 hour', clock_timestamp() + interval '1 hour'),
  ('gw-held-tep', pg_temp.now_s(), NULL, NULL, NULL, NULL);
SELECT presence_worker_start('gw-held-dead'), presence_worker_start('gw-held-lease'),
       presence_worker_start('gw-held-tep', interval '1 minute');
RESET presence.worker_id;

----------------------------------------------------------------------------
-- A named worker whose connection ended: the prune removes its entries
-- and its row and remembers it, so that a track, status change or
-- heartbeat of the id (from another connection, a pool) fails with 55000
-- instead of registering it again as a heartbeat worker.  Leaves find
-- nothing.  Connection ids are not remembered (no other connection may use
-- them), nor are Tep's heartbeat ids, which keep registering on first use.
----------------------------------------------------------------------------
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid, backend_start) VALUES
  ('gw-gone', pg_temp.now_s(), pg_backend_pid(), '2000-01-01'),
  ('pg-1-1', pg_temp.now_s(), pg_backend_pid(), '2000-01-01'),
  ('gw-gone-tep', 1, NULL, NULL);
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
VALUES ('gw-gone', 'ended', 1, 'p', 1), ('pg-1-1', 'ended', 2, 'p', 1);
SELECT presence_prune_dead_workers() AS pruned;
SELECT worker_id, backend_pid = pg_backend_pid() AS its_pid,
       ended_ts BETWEEN pg_temp.now_s() AND pg_temp.now_s() + 1 AS ended_now
  FROM presence_ended_worker;
SELECT pg_temp.seq('ended') AS seq_before \gset
SELECT pg_temp.try($$SELECT presence_track('ended', 1, 'p', worker_id => 'gw-gone')$$) AS track;
SELECT pg_temp.try($$SELECT presence_set_status('ended', 1, 'busy', '', 0, 'gw-gone')$$) AS set_status;
SELECT pg_temp.try($$SELECT presence_set_status('ended', 1, 'busy', '', interval '1 minute', 'gw-gone')$$) AS set_status_for;
SELECT pg_temp.try($$SELECT presence_clear_status('ended', 1, 'gw-gone')$$) AS clear_status;
SELECT pg_temp.try($$SELECT presence_set_meta('ended', 1, '{}', 'gw-gone')$$) AS set_meta;
SELECT pg_temp.try($$SELECT presence_heartbeat('gw-gone')$$) AS heartbeat;
SET presence.worker_id = 'gw-gone';
SELECT pg_temp.try($$SELECT presence_track('ended', 1, 'p')$$) AS track_via_guc;
RESET presence.worker_id;
SELECT presence_untrack('ended', 1, 'gw-gone') AS untrack,
       presence_untrack_by_fd(1, 'gw-gone') AS untrack_by_fd,
       presence_clear('gw-gone') AS clear;
-- The error in full (the pid and time masked).
SELECT regexp_replace(replace(pg_temp.full_error($$SELECT presence_track('ended', 1, 'p', worker_id => 'gw-gone')$$),
                              pg_backend_pid()::text, '<pid>'),
                      'removed at [^\n]*\.', 'removed at <time>.') AS error;
-- Nothing registered, nothing emitted.
SELECT count(*) AS gone_rows FROM tep_presence_worker WHERE worker_id = 'gw-gone';
SELECT pg_temp.seq('ended') = :seq_before AS no_diff;
-- Tep's heartbeat ids still register on first use; a stale heartbeat row
-- (not connection-bound) is not remembered either.
SELECT presence_track('ended', 3, 'p', worker_id => 'tep-new') AS tep_track,
       presence_track('ended', 4, 'p', worker_id => 'gw-gone-tep') AS stale_tep_track;
SELECT * FROM pg_temp.worker('tep-new');
-- presence_worker_start registers it again and forgets its end.
SELECT presence_worker_start('gw-gone') AS started_again;
RESET presence.worker_id;
SELECT presence_track('ended', 1, 'p', worker_id => 'gw-gone') AS tracks_again;
SELECT count(*) AS remembered FROM presence_ended_worker;
-- presence_worker_stop forgets it too (no error: the id was known).
INSERT INTO presence_ended_worker VALUES ('gw-stopped', 1, pg_temp.now_s());
SELECT presence_worker_stop('gw-stopped') AS stopped;
SELECT pg_temp.try($$SELECT presence_worker_stop('gw-stopped')$$) AS stopped_twice;
-- The prune forgets an end after a day.
INSERT INTO presence_ended_worker VALUES
  ('gw-day-old', 1, pg_temp.now_s() - 86401), ('gw-recent', 1, pg_temp.now_s() - 86000);
SELECT presence_prune_dead_workers() AS pruned;
SELECT worker_id FROM presence_ended_worker ORDER BY 1;

-- Clean up.
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
DELETE FROM presence_ended_worker;
