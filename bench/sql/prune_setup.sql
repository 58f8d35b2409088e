-- A dead Tep-style heartbeat worker :'wid' (psql variable) whose last
-- heartbeat is a day old (older than presence.worker_ttl), with :n
-- entries spread over the 10,000 topics t0 .. t9999.
\set ON_ERROR_STOP 1
INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
VALUES (:'wid', floor(extract(epoch FROM now()))::bigint - 86400);
INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
SELECT :'wid', 't' || (i % 10000), 1000000 + i, 'user:' || i,
       floor(extract(epoch FROM now()))::bigint - 3600
  FROM generate_series(0, :n - 1) i;
VACUUM ANALYZE tep_presence, tep_presence_worker, presence_topic_seq;
