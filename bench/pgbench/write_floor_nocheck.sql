-- The bare floor without the CHECK: the floor's three changes on a copy of
-- tep_presence with its columns, defaults and indexes only (schema
-- floor_nc), no function, no seq, no NOTIFY.
\set t random(1, 1000)
\set fd random(0, 2000000000)
INSERT INTO floor_nc.tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('bench-w' || :client_id, 'room:' || :t, :fd, 'user:' || :client_id, 'human', '', floor(extract(epoch FROM transaction_timestamp()))::bigint);
UPDATE floor_nc.tep_presence SET status_state = 'busy', status_note = 'in a meeting', status_until = 0 WHERE topic = 'room:' || :t AND worker_id = 'bench-w' || :client_id AND fd = :fd;
DELETE FROM floor_nc.tep_presence WHERE topic = 'room:' || :t AND worker_id = 'bench-w' || :client_id AND fd = :fd;
