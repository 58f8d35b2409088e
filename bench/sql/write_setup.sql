-- Background rows for the write benchmarks, the same on all three sides:
-- 1000 topics room:1 .. room:1000 with 10 entries each of a live heartbeat
-- worker "bg-w", and each topic's seq row, so the write path works on
-- populated indexes rather than on empty tables.  Also the entries the
-- delivery benchmark changes: topics lat:1 .. lat:10, fds 1 .. 100 of
-- worker "lat-w".  Run as a superuser (writes the extension's tables
-- directly).
\set ON_ERROR_STOP 1
SELECT floor(extract(epoch FROM now()))::bigint AS now_s \gset

INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
VALUES ('bg-w', :now_s), ('lat-w', :now_s);
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
SELECT 'bg-w', 'room:' || t, f, 'user:' || (t * 10 + f), :now_s
  FROM generate_series(1, 1000) t, generate_series(0, 9) f;
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
SELECT 'lat-w', 'lat:' || t, f, 'user:' || f, :now_s
  FROM generate_series(1, 10) t, generate_series(1, 100) f;
INSERT INTO presence_topic_seq (topic, seq)
SELECT 'room:' || t, 10 FROM generate_series(1, 1000) t
UNION ALL
SELECT 'lat:' || t, 100 FROM generate_series(1, 10) t;

INSERT INTO ref.tep_presence_worker SELECT worker_id, last_seen_ts FROM tep_presence_worker;
INSERT INTO ref.tep_presence SELECT * FROM tep_presence;
INSERT INTO ref.presence_topic_seq SELECT * FROM presence_topic_seq;

INSERT INTO floor.tep_presence SELECT * FROM tep_presence;
INSERT INTO floor.presence_topic_seq SELECT * FROM presence_topic_seq;

VACUUM ANALYZE tep_presence, tep_presence_worker, presence_topic_seq,
    ref.tep_presence, ref.tep_presence_worker, ref.presence_topic_seq,
    floor.tep_presence, floor.presence_topic_seq;

INSERT INTO minimal.tep_presence SELECT * FROM tep_presence;
INSERT INTO floor_nc.tep_presence SELECT * FROM tep_presence;
