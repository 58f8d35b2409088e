--
-- presence_batch: 1.1's calls of many entries or topics (batch.c):
-- presence_track_many, presence_snapshot_many, presence_snapshot_rows.
-- Each diff is observed through its topic's seq, as in presence_api.
--
\set VERBOSITY terse
SET client_min_messages = warning;

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

CREATE FUNCTION pg_temp.seq(t text) RETURNS bigint LANGUAGE sql AS
$$ SELECT coalesce((SELECT seq FROM presence_topic_seq WHERE topic = t), 0) $$;

-- Three new entries of two topics, defaults filled in: one diff each.
SELECT presence_track_many($$[
  {"topic": "room:a", "fd": 1, "principal_id": "u1"},
  {"topic": "room:a", "fd": 2, "principal_id": "u2", "meta": {"name": "Ann"}},
  {"topic": "room:b", "fd": 1, "principal_id": "u1", "kind": "agent_for",
   "agent_id": "bot", "meta": {}}]$$, 'gw-1');
SELECT worker_id, topic, fd, principal_id, kind, agent_id, status_state,
       status_note, status_until, meta
  FROM tep_presence ORDER BY topic, fd;
SELECT pg_temp.seq('room:a'), pg_temp.seq('room:b');
-- The worker was registered by the first entry, as presence_track does.
SELECT worker_id FROM tep_presence_worker;

-- Existing entries are not counted and send nothing; their meta stays.
SELECT presence_track_many($$[
  {"topic": "room:a", "fd": 2, "principal_id": "u2", "meta": {"name": "Bob"}},
  {"topic": "room:c", "fd": 7, "principal_id": "u3"}]$$, 'gw-1');
SELECT meta FROM tep_presence WHERE topic = 'room:a' AND fd = 2;
SELECT pg_temp.seq('room:a'), pg_temp.seq('room:c');

-- An empty array tracks nothing.
SELECT presence_track_many('[]', 'gw-1');

-- worker_id NULL: the session's worker, as in presence_track.
SET presence.worker_id = 'gw-session';
SELECT presence_track_many('[{"topic": "room:s", "fd": 1, "principal_id": "u9"}]');
SELECT worker_id FROM tep_presence WHERE topic = 'room:s';
RESET presence.worker_id;

-- Bad input in any element: an ERROR naming its index, nothing changed
-- (entries, seqs).
CREATE TABLE before AS SELECT * FROM tep_presence;
CREATE TABLE seqs_before AS SELECT * FROM presence_topic_seq;
SELECT presence_track_many(NULL, 'gw-1');
SELECT presence_track_many('{"topic": "room:a"}', 'gw-1');
SELECT presence_track_many('"x"', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u"}, 5]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u"}, {"topic": "room:n", "fd": -1, "principal_id": "u"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u"}, {"topic": "room:n", "fd": 1.5, "principal_id": "u"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 4294967296, "principal_id": "u"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": "1", "principal_id": "u"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal": "u"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": null}]', 'gw-1');
SELECT presence_track_many('[{"topic": "", "fd": 1, "principal_id": "u"}]', 'gw-1');
SELECT presence_track_many('[{"topic": 3, "fd": 1, "principal_id": "u"}]', 'gw-1');
SELECT presence_track_many(jsonb_build_array(jsonb_build_object('topic', repeat('x', 256), 'fd', 1, 'principal_id', 'u')), 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u"}, {"topic": "room:n", "fd": 2, "principal_id": "u", "kind": "robot"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u", "kind": "agent_for"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u", "agent_id": "bot"}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u", "meta": [1]}]', 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u", "meta": null}]', 'gw-1');
SELECT presence_track_many(jsonb_build_array(jsonb_build_object('topic', 'room:n', 'fd', 1, 'principal_id', 'u', 'meta', jsonb_build_object('x', repeat('y', 2100)))), 'gw-1');
SELECT presence_track_many('[{"topic": "room:n", "fd": 1, "principal_id": "u"}]', '');
SELECT (SELECT count(*) FROM tep_presence) = (SELECT count(*) FROM before)
   AND NOT EXISTS (SELECT * FROM tep_presence EXCEPT SELECT * FROM before) AS entries_unchanged,
       NOT EXISTS (SELECT * FROM presence_topic_seq EXCEPT SELECT * FROM seqs_before)
   AND NOT EXISTS (SELECT * FROM seqs_before EXCEPT SELECT * FROM presence_topic_seq) AS seqs_unchanged;
DROP TABLE before, seqs_before;

-- A worker of another role: 42501, not an element's error.
CREATE ROLE regress_batch_other;
GRANT EXECUTE ON FUNCTION presence_track_many(jsonb, text) TO regress_batch_other;
SET ROLE regress_batch_other;
SELECT presence_track_many('[{"topic": "room:a", "fd": 5, "principal_id": "u"}]', 'gw-1');
RESET ROLE;

-- In a transaction: one commit, the diffs' seqs in array order.
BEGIN;
SELECT presence_track_many($$[
  {"topic": "room:t", "fd": 3, "principal_id": "u"},
  {"topic": "room:t", "fd": 1, "principal_id": "u"},
  {"topic": "room:t", "fd": 2, "principal_id": "u"}]$$, 'gw-1');
SELECT pg_temp.seq('room:t');
COMMIT;
SELECT pg_temp.seq('room:t');
-- A rolled-back call sends nothing and leaves no gap.
BEGIN;
SELECT presence_track_many('[{"topic": "room:t", "fd": 4, "principal_id": "u"}]', 'gw-1');
ROLLBACK;
SELECT pg_temp.seq('room:t'), count(*) FROM tep_presence WHERE topic = 'room:t';

-- presence_set_status_many: presence_set_status for each element (note
-- and until_ts optional); counts the entries found, one diff each.
SELECT presence_set_status_many($$[
  {"topic": "room:t", "fd": 1, "state": "busy", "note": "in a call", "until_ts": 4102444800},
  {"topic": "room:t", "fd": 2, "state": "blocked"},
  {"topic": "room:t", "fd": 99, "state": "busy"}]$$, 'gw-1');
SELECT fd, status_state, status_note, status_until FROM tep_presence
 WHERE topic = 'room:t' ORDER BY fd;
SELECT pg_temp.seq('room:t');
CREATE TABLE before AS SELECT * FROM tep_presence;
SELECT presence_set_status_many(NULL, 'gw-1');
SELECT presence_set_status_many('[]', 'gw-1');
SELECT presence_set_status_many('[{"topic": "room:t", "fd": 1, "state": "available"}, {"topic": "room:t", "fd": 2, "state": "away"}]', 'gw-1');
SELECT presence_set_status_many('[{"topic": "room:t", "fd": 1, "state": "busy", "until_ts": -1}]', 'gw-1');
SELECT presence_set_status_many('[{"topic": "room:t", "fd": 1, "state": "busy", "until_ts": 1.5}]', 'gw-1');
SELECT presence_set_status_many('[{"topic": "room:t", "fd": 1, "state": "busy", "until": 0}]', 'gw-1');
SELECT presence_set_status_many('[{"topic": "room:t", "fd": 1}]', 'gw-1');
SELECT presence_set_status_many(jsonb_build_array(jsonb_build_object('topic', 'room:t', 'fd', 1, 'state', 'busy', 'note', repeat('n', 1025))), 'gw-1');
SELECT NOT EXISTS (SELECT * FROM tep_presence EXCEPT SELECT * FROM before) AS unchanged,
       pg_temp.seq('room:t');
DROP TABLE before;

-- presence_snapshot_many: presence_snapshot of each, in the array's order
-- (repeats too); a topic never used has seq 0 and no entries.
SELECT s::text = presence_snapshot(t)::text AS same_as_snapshot, s ->> 'topic' AS topic,
       s ->> 'seq' AS seq, json_array_length(s -> 'entries') AS entries
  FROM presence_snapshot_many(ARRAY['room:t', 'room:a', 'nowhere', 'room:a'])
       WITH ORDINALITY AS m(s, i)
  JOIN unnest(ARRAY['room:t', 'room:a', 'nowhere', 'room:a']) WITH ORDINALITY AS u(t, j) ON i = j
 ORDER BY i;
SELECT count(*) FROM presence_snapshot_many('{}');
SELECT presence_snapshot_many(NULL);
SELECT presence_snapshot_many(ARRAY['room:a', NULL]);
SELECT presence_snapshot_many(ARRAY['room:a', '']);
SELECT presence_snapshot_many(ARRAY['room:a', repeat('x', 256)]);
SELECT presence_snapshot_many(ARRAY[['room:a'], ['room:b']]);

-- presence_snapshot_rows: the header (seq, epoch, NULL), then
-- presence_snapshot's entries in its order, each row with the seq.
SELECT seq, epoch = presence_epoch() AS epoch,
       regexp_replace(entry::text, '"since":[0-9]+', '"since":S') AS entry
  FROM presence_snapshot_rows('room:t');
SELECT (SELECT jsonb_agg(entry::jsonb) FROM presence_snapshot_rows('room:a') WHERE entry IS NOT NULL)
     = (presence_snapshot('room:a') -> 'entries')::jsonb AS same_entries;
SELECT seq, entry FROM presence_snapshot_rows('nowhere');
SELECT * FROM presence_snapshot_rows(NULL);
SELECT * FROM presence_snapshot_rows('');
-- Read with a cursor, a few rows at a time.
BEGIN;
DECLARE c CURSOR FOR SELECT seq, entry ->> 'fd' AS fd FROM presence_snapshot_rows('room:t');
FETCH 2 FROM c;
FETCH 2 FROM c;
COMMIT;

REVOKE ALL ON FUNCTION presence_track_many(jsonb, text) FROM regress_batch_other;
DROP ROLE regress_batch_other;
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
