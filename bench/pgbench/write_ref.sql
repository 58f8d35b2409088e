-- One presence cycle through the PL/pgSQL reference (bench/plpgsql_reference.sql).
\set t random(1, 1000)
\set fd random(0, 2000000000)
SELECT ref.presence_track('room:' || :t, :fd, 'user:' || :client_id, 'human', '', 'bench-w' || :client_id);
SELECT ref.presence_set_status('room:' || :t, :fd, 'busy', 'in a meeting', 0, 'bench-w' || :client_id);
SELECT ref.presence_untrack('room:' || :t, :fd, 'bench-w' || :client_id);
