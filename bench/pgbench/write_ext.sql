-- One presence cycle through the extension: join, status, leave (three
-- autocommit statements, as a gateway issues them).
\set t random(1, 1000)
\set fd random(0, 2000000000)
SELECT presence_track('room:' || :t, :fd, 'user:' || :client_id, 'human', '', 'bench-w' || :client_id);
SELECT presence_set_status('room:' || :t, :fd, 'busy', 'in a meeting', 0, 'bench-w' || :client_id);
SELECT presence_untrack('room:' || :t, :fd, 'bench-w' || :client_id);
