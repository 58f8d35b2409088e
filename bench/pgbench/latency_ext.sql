-- Delivery: one status diff per transaction on pre-tracked entries (10
-- topics x 100 fds of worker lat-w); the note carries the sender's clock
-- in epoch microseconds, read back by bench/listener -L.
\set t random(1, 10)
\set fd random(1, 100)
SELECT presence_set_status('lat:' || :t, :fd, 'busy', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text, 0, 'lat-w');
