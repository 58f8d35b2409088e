-- Delivery through the PL/pgSQL reference; see latency_ext.sql.
\set t random(1, 10)
\set fd random(1, 100)
SELECT ref.presence_set_status('lat:' || :t, :fd, 'busy', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text, 0, 'lat-w');
