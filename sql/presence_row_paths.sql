-- track, set_status, set_meta and untrack change their entry without the
-- executor (src/row.c) only while tep_presence is as the extension made
-- it.  What an application adds to the table is still honoured, through
-- the statements: its triggers fire, its CHECKs hold, its columns get
-- their defaults and are kept.  And without the executor the CHECK's own
-- rules still hold.
SET client_min_messages = warning;
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES ('rp-w', 4102444800);

-- A row trigger of the application's sees every change.
CREATE TABLE regress_row_log (op text, fd integer, state text, meta jsonb);
CREATE FUNCTION regress_row_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO regress_row_log VALUES (TG_OP, OLD.fd, OLD.status_state, OLD.meta);
  ELSE
    INSERT INTO regress_row_log VALUES (TG_OP, NEW.fd, NEW.status_state, NEW.meta);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER regress_row_log AFTER INSERT OR UPDATE OR DELETE ON tep_presence
  FOR EACH ROW EXECUTE FUNCTION regress_row_log();
SELECT presence_track('rp', 1, 'u', worker_id => 'rp-w', meta => '{"a": 1}');
SELECT presence_set_status('rp', 1, 'busy', 'n', 0, 'rp-w');
SELECT presence_set_meta('rp', 1, '{"b": 2}', 'rp-w');
SELECT presence_clear_status('rp', 1, 'rp-w');
SELECT presence_untrack('rp', 1, 'rp-w');
SELECT * FROM regress_row_log;
DROP TRIGGER regress_row_log ON tep_presence;

-- A trigger of one kind of change leaves the others without the executor,
-- and fires for its own.
CREATE TRIGGER regress_row_log AFTER DELETE ON tep_presence
  FOR EACH ROW EXECUTE FUNCTION regress_row_log();
TRUNCATE regress_row_log;
SELECT presence_track('rp', 2, 'u', worker_id => 'rp-w');
SELECT presence_set_status('rp', 2, 'blocked', '', 0, 'rp-w');
SELECT presence_untrack('rp', 2, 'rp-w');
SELECT * FROM regress_row_log;
DROP TRIGGER regress_row_log ON tep_presence;

-- A CHECK of the application's holds for every change (terse: the failing
-- row has the time in it).
\set VERBOSITY terse
ALTER TABLE tep_presence ADD CONSTRAINT regress_small_fd CHECK (fd < 100),
  ADD CONSTRAINT regress_short_note CHECK (length(status_note) < 5);
SELECT presence_track('rp', 500, 'u', worker_id => 'rp-w');
SELECT presence_track('rp', 3, 'u', worker_id => 'rp-w');
SELECT presence_set_status('rp', 3, 'busy', 'too long', 0, 'rp-w');
SELECT presence_set_status('rp', 3, 'busy', 'ok', 0, 'rp-w');
ALTER TABLE tep_presence DROP CONSTRAINT regress_small_fd,
  DROP CONSTRAINT regress_short_note;
\set VERBOSITY default

-- A column of the application's gets its default and is kept (rolled
-- back: a dropped column would stay in the table for the files after).
BEGIN;
ALTER TABLE tep_presence ADD COLUMN regress_extra text DEFAULT 'x';
SELECT presence_track('rp', 4, 'u', worker_id => 'rp-w');
UPDATE tep_presence SET regress_extra = 'y' WHERE fd = 4;
SELECT presence_set_status('rp', 4, 'busy', '', 0, 'rp-w');
SELECT fd, status_state, regress_extra FROM tep_presence WHERE topic = 'rp' ORDER BY fd;
ROLLBACK;

-- Without the executor: the entry's diffs must still fit in a NOTIFY
-- (22023; nothing changes), and the statement's own changes are seen.
SELECT presence_set_meta('rp', 3, jsonb_build_object('m', repeat(E'\u0001', 300)), 'rp-w');
SELECT presence_set_status('rp', 3, 'busy', repeat(E'\u0001', 1000), 0, 'rp-w');
SELECT status_note = 'ok' AS unchanged FROM tep_presence WHERE topic = 'rp' AND fd = 3;
SELECT presence_track('rp', 5, 'u', worker_id => 'rp-w') AS first,
       presence_track('rp', 5, 'u', worker_id => 'rp-w') AS again,
       presence_set_status('rp', 5, 'busy', '', 0, 'rp-w') AS status,
       presence_untrack('rp', 5, 'rp-w') AS left,
       presence_untrack('rp', 5, 'rp-w') AS left_again;

-- SERIALIZABLE transactions change rows without the executor too.  The
-- second track finds the key taken: PostgreSQL 19's arbiter check then
-- reads that row with the EState's snapshot, which the direct path once
-- left unset (the backend crashed).
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT presence_track('rp', 6, 'u', worker_id => 'rp-w') AS tracked,
       presence_track('rp', 6, 'u', worker_id => 'rp-w') AS again,
       presence_set_status('rp', 6, 'busy', '', 0, 'rp-w') AS status,
       presence_untrack('rp', 6, 'rp-w') AS left;
COMMIT;

DROP TABLE regress_row_log;
DROP FUNCTION regress_row_log();
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
