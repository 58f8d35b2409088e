--
-- presence_meta: 1.1's meta per entry, session history, last seen and one
-- row per principal.
--
SET client_min_messages = warning;
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
DELETE FROM presence_history;
CREATE TEMP VIEW now_s AS SELECT trunc(extract(epoch FROM now()))::bigint AS s;
-- Times of earlier statements: within the last minute (a statement may
-- run in a later second than the one before it).
CREATE FUNCTION pg_temp.recent(ts bigint) RETURNS boolean LANGUAGE sql AS
$$SELECT ts BETWEEN (SELECT s FROM now_s) - 60 AND (SELECT s FROM now_s)$$;

-- meta: set at join, '{}' by default and for Tep's own INSERTs.
SELECT presence_track('m', 1, 'user:ann', worker_id => 'gw-1',
                      meta => '{"name": "Ann", "avatar": "a.png"}');
SELECT presence_track('m', 2, 'user:bob', worker_id => 'gw-1');
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts)
VALUES ('tep-1', 'm', 3, 'user:cy', 'human', '', 1);
SELECT fd, meta FROM presence_list_global('m') ORDER BY fd;
-- An existing entry is left as it is, meta included.
SELECT presence_track('m', 1, 'user:ann', worker_id => 'gw-1', meta => '{"name": "X"}');
SELECT (presence_find_entry('m', 1, 'gw-1')).meta;
-- The snapshot carries it after worker_id.
SELECT json_array_elements(presence_snapshot('m') -> 'entries') ->> 'meta' AS meta;

-- presence_set_meta: replaces it in place, one diff (seq + 1), the status
-- kept; false (and no diff) for no such entry.  The same meta again is
-- still a diff, like set_status.
SELECT presence_set_status('m', 1, 'busy', 'call', 0, 'gw-1');
SELECT seq FROM presence_topic_seq WHERE topic = 'm';
SELECT presence_set_meta('m', 1, '{"name": "Ann B.", "page": "/docs"}', 'gw-1');
SELECT presence_set_meta('m', 1, '{"name": "Ann B.", "page": "/docs"}', 'gw-1');
SELECT presence_set_meta('m', 99, '{}', 'gw-1');
SELECT seq FROM presence_topic_seq WHERE topic = 'm';
SELECT status_state, status_note, meta FROM presence_find_entry('m', 1, 'gw-1');
-- Rolled back: nothing kept.
BEGIN;
SELECT presence_set_meta('m', 2, '{"name": "Bob"}', 'gw-1');
ROLLBACK;
SELECT meta, (SELECT seq FROM presence_topic_seq WHERE topic = 'm') FROM presence_find_entry('m', 2, 'gw-1');
-- The limit: 2048 bytes as jsonb writes them.
SELECT presence_set_meta('m', 2, jsonb_build_object('k', repeat('x', 2039)), 'gw-1');
SELECT octet_length(meta::text) FROM presence_find_entry('m', 2, 'gw-1');

-- One row per principal.  State over the human connections: busy beats
-- available beats blocked; over the agents' when no human is connected.
SELECT presence_clear('gw-1'), presence_clear('tep-1');
SELECT presence_track('p', 1, 'user:ann', worker_id => 'gw-1', meta => '{"name": "Ann (old tab)"}');
SELECT presence_track('p', 2, 'user:ann', worker_id => 'gw-2', meta => '{"name": "Ann"}');
SELECT presence_track('p', 3, 'user:ann', 'agent_for', 'bot-a', 'gw-1');
SELECT presence_track('p', 4, 'user:ann', 'agent_for', 'bot-a', 'gw-2');
SELECT presence_track('p', 5, 'user:ann', 'agent_for', 'bot-b', 'gw-1');
SELECT presence_set_status('p', 2, 'busy', '', 0, 'gw-2');
SELECT presence_set_status('p', 1, 'blocked', '', 0, 'gw-1');
SELECT presence_track('p', 6, 'user:bob', worker_id => 'gw-1');
SELECT presence_track('p', 7, 'user:bob', worker_id => 'gw-2');
SELECT presence_set_status('p', 6, 'blocked', '', 0, 'gw-1');
SELECT presence_track('p', 8, 'user:cy', worker_id => 'gw-1');
SELECT presence_set_status('p', 8, 'blocked', '', 0, 'gw-1');
SELECT presence_track('p', 9, 'user:dee', 'agent_for', 'bot-d', 'gw-1');
SELECT presence_set_status('p', 9, 'busy', 'working', 0, 'gw-1');
-- ann: busy (a busy tab beats a blocked one); bob: available; cy: blocked;
-- dee: no human, so her agent's busy.
SELECT principal_id, humans, agents, connections, state,
       pg_temp.recent(since) AS since_recent, meta
  FROM presence_principals('p');
SELECT presence_count_principals('p'), presence_count_principals('nowhere');
SELECT count(*) FROM presence_principals('nowhere');

-- History: off by default, nothing recorded.
SHOW presence.history;
SHOW presence.history_retention;
SELECT presence_untrack('p', 9, 'gw-1');
SELECT count(*) FROM presence_history;
-- On: one row per ended session, with why it ended.
SET presence.history = on;
SELECT presence_untrack('p', 8, 'gw-1');
SELECT presence_untrack_by_fd(7, 'gw-2');
SELECT presence_worker_start('gw-2');
SELECT presence_track('p', 10, 'user:eve', worker_id => 'gw-3');
SELECT presence_worker_stop('gw-3');
SELECT presence_track('p', 11, 'user:fay', worker_id => 'tep-old');
UPDATE tep_presence_worker SET last_seen_ts = 1 WHERE worker_id = 'tep-old';
SELECT presence_prune_dead_workers();
SELECT presence_clear('gw-1');
-- A rolled-back leave records nothing.
BEGIN;
SELECT presence_track('p', 12, 'user:gus', worker_id => 'gw-4');
COMMIT;
BEGIN;
SELECT presence_untrack('p', 12, 'gw-4');
ROLLBACK;
SELECT worker_id, fd, principal_id, kind, agent_id, meta, reason,
       joined_ts <= left_ts AS joined_first, pg_temp.recent(left_ts) AS left_recent
  FROM presence_history('p', 0, 9223372036854775807)
 ORDER BY reason, worker_id, fd;
-- The range: sessions that overlap [from_ts, to_ts).
SELECT count(*) FROM presence_history('p', (SELECT s FROM now_s) - 60, (SELECT s FROM now_s) + 1);
SELECT count(*) FROM presence_history('p', (SELECT s FROM now_s) + 1, (SELECT s FROM now_s) + 10);
SELECT count(*) FROM presence_history('p', 0, (SELECT s FROM now_s) - 60);
SELECT count(*) FROM presence_history('elsewhere', 0, 9223372036854775807);

-- Last seen: now while present; the last leave when gone; NULL if never.
INSERT INTO presence_history (topic, worker_id, fd, principal_id, kind, agent_id, meta, joined_ts, left_ts, reason)
VALUES ('q', 'gw-9', 1, 'user:zed', 'human', '', '{}', 100, 200, 'untrack'),
       ('q', 'gw-9', 2, 'user:zed', 'human', '', '{}', 100, 300, 'untrack'),
       ('r', 'gw-9', 3, 'user:zed', 'human', '', '{}', 100, 250, 'untrack');
SELECT presence_last_seen('user:zed'), presence_last_seen('user:zed', 'r'),
       presence_last_seen('user:zed', 'p'), presence_last_seen('user:nobody');
SELECT presence_last_seen('user:gus') = (SELECT s FROM now_s) AS gus_present,
       presence_last_seen('user:gus', 'p') = (SELECT s FROM now_s) AS gus_present_in_p,
       presence_last_seen('user:gus', 'q') AS gus_in_q,
       pg_temp.recent(presence_last_seen('user:cy')) AS cy_left_recently,
       presence_last_seen('user:cy') = (SELECT left_ts FROM presence_history WHERE principal_id = 'user:cy') AS cy_at_leave;

-- Retention: whole days older than presence.history_retention go, the
-- default partition's old rows too; the current day stays.
SELECT presence_history_maintain();
SELECT count(*) AS day_partitions FROM pg_inherits
 WHERE inhparent = 'presence_history'::regclass AND inhrelid <> 'presence_history_default'::regclass;
CREATE TABLE presence_history_20000101 PARTITION OF presence_history
    FOR VALUES FROM (946684800) TO (946771200);
INSERT INTO presence_history (topic, worker_id, fd, principal_id, kind, agent_id, meta, joined_ts, left_ts, reason)
VALUES ('old', 'gw-9', 1, 'user:old', 'human', '', '{}', 946684800, 946684900, 'untrack');
SELECT presence_history_maintain();
SELECT to_regclass('presence_history_20000101') IS NULL AS dropped,
       (SELECT count(*) FROM presence_history WHERE left_ts < 1000) AS old_default_rows_left,
       (SELECT count(*) FROM presence_history WHERE topic = 'p') AS today_kept;
SELECT presence_last_seen('user:old');

-- Clean up: history off, rows and day partitions gone.
RESET presence.history;
SELECT presence_clear('gw-4');
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
