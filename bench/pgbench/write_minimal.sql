-- One presence cycle through the minimal PL/pgSQL (bench/plpgsql_minimal.sql).
\set t random(1, 1000)
\set fd random(0, 2000000000)
SELECT minimal.presence_track('room:' || :t, :fd, 'user:' || :client_id, 'human', '', 'bench-w' || :client_id);
SELECT minimal.presence_set_status('room:' || :t, :fd, 'busy', 'in a meeting', 0, 'bench-w' || :client_id);
SELECT minimal.presence_untrack('room:' || :t, :fd, 'bench-w' || :client_id);
