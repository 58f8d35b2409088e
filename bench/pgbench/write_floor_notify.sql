-- Diagnostic: the floor's three changes, each also sending one NOTIFY
-- (a short payload, no JSON, no seq): what NOTIFY alone adds.
\set t random(1, 1000)
\set fd random(0, 2000000000)
WITH e AS (INSERT INTO floor.tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('bench-w' || :client_id, 'room:' || :t, :fd, 'user:' || :client_id, 'human', '', floor(extract(epoch FROM transaction_timestamp()))::bigint) RETURNING topic, fd) SELECT pg_notify('tep_broadcast', 'join:' || e.topic || ':' || e.fd) FROM e;
WITH e AS (UPDATE floor.tep_presence SET status_state = 'busy', status_note = 'in a meeting', status_until = 0 WHERE topic = 'room:' || :t AND worker_id = 'bench-w' || :client_id AND fd = :fd RETURNING topic, fd) SELECT pg_notify('tep_broadcast', 'status:' || e.topic || ':' || e.fd) FROM e;
WITH e AS (DELETE FROM floor.tep_presence WHERE topic = 'room:' || :t AND worker_id = 'bench-w' || :client_id AND fd = :fd RETURNING topic, fd) SELECT pg_notify('tep_broadcast', 'leave:' || e.topic || ':' || e.fd) FROM e;
