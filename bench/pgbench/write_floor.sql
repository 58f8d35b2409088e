-- The bare floor: the same three changes as plain DML on a copy of the
-- table (bench/floor.sql), no function, no seq, no NOTIFY.
\set t random(1, 1000)
\set fd random(0, 2000000000)
INSERT INTO floor.tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('bench-w' || :client_id, 'room:' || :t, :fd, 'user:' || :client_id, 'human', '', floor(extract(epoch FROM transaction_timestamp()))::bigint);
UPDATE floor.tep_presence SET status_state = 'busy', status_note = 'in a meeting', status_until = 0 WHERE topic = 'room:' || :t AND worker_id = 'bench-w' || :client_id AND fd = :fd;
DELETE FROM floor.tep_presence WHERE topic = 'room:' || :t AND worker_id = 'bench-w' || :client_id AND fd = :fd;
