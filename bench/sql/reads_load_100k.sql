-- Reads at scale, first stage: 100,090 entries across 10,000 topics t0 ..
-- t9999 (10 each) except t42, which has 100, from 100 live heartbeat
-- workers w0 .. w99; every tenth entry is an agent.  Rows go in in fd
-- order across topics, so one topic's entries lie on many heap pages, as
-- they would after a day of joins.  Also each topic's seq row.
\set ON_ERROR_STOP 1
SELECT floor(extract(epoch FROM now()))::bigint AS now_s \gset
TRUNCATE tep_presence;
DELETE FROM tep_presence_worker;
INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
SELECT 'w' || i, :now_s FROM generate_series(0, 99) i;
INSERT INTO presence_topic_seq (topic, seq)
SELECT 't' || t, 100 FROM generate_series(0, 9999) t
ON CONFLICT (topic) DO NOTHING;
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id,
                          since_ts)
SELECT 'w' || ((t + n) % 100), 't' || t, n, 'user:' || ((t * 100 + n) % 50000),
       CASE WHEN n % 10 = 9 THEN 'agent_for' ELSE 'human' END,
       CASE WHEN n % 10 = 9 THEN 'agent:' || n ELSE '' END,
       :now_s - 86400 + (t * 7919 + n * 104729) % 86400
  FROM generate_series(0, 99) n, generate_series(0, 9999) t
 WHERE n < 10 OR t = 42
 ORDER BY n, t;
VACUUM ANALYZE tep_presence, tep_presence_worker, presence_topic_seq;
SELECT count(*) AS rows, count(DISTINCT topic) AS topics,
       count(*) FILTER (WHERE topic = 't42') AS t42_rows
  FROM tep_presence;
