-- Diagnostic: the PL/pgSQL reference without SECURITY DEFINER and SET
-- search_path (bench/sql/ref_plain.sh), on the reference's tables.
\set t random(1, 1000)
\set fd random(0, 2000000000)
SELECT ref.plain_presence_track('room:' || :t, :fd, 'user:' || :client_id, 'human', '', 'bench-w' || :client_id);
SELECT ref.plain_presence_set_status('room:' || :t, :fd, 'busy', 'in a meeting', 0, 'bench-w' || :client_id);
SELECT ref.plain_presence_untrack('room:' || :t, :fd, 'bench-w' || :client_id);
