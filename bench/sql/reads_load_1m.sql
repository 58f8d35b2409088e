-- Reads at scale, second stage: grows the first stage's table to
-- 1,000,000 entries, 100 in every topic; t42 keeps its 100.
\set ON_ERROR_STOP 1
SELECT floor(extract(epoch FROM now()))::bigint AS now_s \gset
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id,
                          since_ts)
SELECT 'w' || ((t + n) % 100), 't' || t, n, 'user:' || ((t * 100 + n) % 50000),
       CASE WHEN n % 10 = 9 THEN 'agent_for' ELSE 'human' END,
       CASE WHEN n % 10 = 9 THEN 'agent:' || n ELSE '' END,
       :now_s - 86400 + (t * 7919 + n * 104729) % 86400
  FROM generate_series(0, 99) n, generate_series(0, 9999) t
 WHERE n >= 10 AND t <> 42
 ORDER BY n, t;
VACUUM ANALYZE tep_presence;
SELECT count(*) AS rows, count(DISTINCT topic) AS topics,
       count(*) FILTER (WHERE topic = 't42') AS t42_rows
  FROM tep_presence;
