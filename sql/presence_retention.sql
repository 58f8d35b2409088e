--
-- presence_retention: idle topics' seq rows removed (retention.c), and the
-- floor a topic without a row goes on from.  The background worker's walk
-- is test/integration/t/31_topic_retention.t's; here
-- presence_remove_idle_topics, the same removal at once.
--
\set VERBOSITY terse
SET client_min_messages = warning;

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

SELECT presence_worker_start('gw-1', '1 hour');
-- room:gone: 2 diffs, then empty; room:live keeps an entry; room:big
-- reaches seq 5, then empty.
SELECT presence_track('room:gone', 1, 'u', worker_id => 'gw-1');
SELECT presence_untrack('room:gone', 1, 'gw-1');
SELECT presence_track('room:live', 1, 'u', worker_id => 'gw-1');
SELECT presence_track('room:big', fd, 'u', worker_id => 'gw-1') FROM generate_series(1, 2) fd;
SELECT presence_untrack('room:big', fd, 'gw-1') FROM generate_series(1, 2) fd;
SELECT presence_track('room:big', 3, 'u', worker_id => 'gw-1');
SELECT presence_untrack('room:big', 3, 'gw-1');
-- Every commit that sends a topic's diffs sets its changed_ts.
SELECT topic, seq, changed_ts > 0 AS changed FROM presence_topic_seq ORDER BY topic;

-- Not idle for an hour yet (the default, presence.topic_retention, is a
-- day): nothing goes.
SELECT presence_remove_idle_topics('1 hour');
SELECT presence_remove_idle_topics();
SELECT current_setting('presence.topic_retention');

-- Idle now: the empty topics go, the live one stays; the floor (topic '')
-- is the highest removed seq.
SELECT presence_remove_idle_topics('0');
SELECT topic, seq FROM presence_topic_seq ORDER BY topic;
SELECT presence_remove_idle_topics('0');

-- A topic without a row reports the floor, in every snapshot form, so
-- that its next diff follows on.
SELECT presence_snapshot('room:gone') ->> 'seq' AS gone,
       presence_snapshot('never-used') ->> 'seq' AS never_used,
       presence_snapshot('room:live') ->> 'seq' AS live;
SELECT s ->> 'topic', s ->> 'seq' FROM presence_snapshot_many(ARRAY['room:gone', 'room:live']) s;
SELECT seq FROM presence_snapshot_rows('room:gone');

-- It comes back above every seq it had (7 > 2), in the same epoch.
SELECT presence_track('room:gone', 1, 'u', worker_id => 'gw-1');
SELECT topic, seq FROM presence_topic_seq ORDER BY topic;
SELECT presence_untrack('room:gone', 1, 'gw-1');
SELECT presence_remove_idle_topics('0');
SELECT topic, seq FROM presence_topic_seq ORDER BY topic;

-- The floor only rises: a row below it (written before 1.1, or by Tep:
-- changed_ts 0) goes and leaves the floor as it is.
INSERT INTO presence_topic_seq (topic, seq) VALUES ('room:old', 3);
SELECT presence_remove_idle_topics('1 day');
SELECT topic, seq FROM presence_topic_seq ORDER BY topic;

-- Errors.
SELECT presence_remove_idle_topics('-1 second');
SELECT presence_remove_idle_topics(interval '1 day' - interval '2 days');

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
