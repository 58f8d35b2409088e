-- presence 1.0 -> 1.1.  CREATE EXTENSION presence installs 1.0 and then
-- runs this script; ALTER EXTENSION presence UPDATE brings a 1.0
-- installation here.

\echo Use "ALTER EXTENSION presence UPDATE TO '1.1'" to load this file. \quit

-- Diffs are JSON sent as text in the database's encoding, and their length
-- prefix counts characters: in SQL_ASCII neither is defined (a payload
-- need not be valid UTF-8, and bytes are counted).  So 1.1 installs only
-- in a UTF8 database.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'presence needs a UTF8 database, not %',
                        pg_catalog.getdatabaseencoding()
              USING ERRCODE = 'feature_not_supported',
                    HINT = 'Create the database with ENCODING ''UTF8''.';
    END IF;
END
$$;

-- The channel a topic's diffs go on when presence.delivery is 'topic' or
-- 'both': 'presence:' || topic when that is a valid channel name (up to 54
-- bytes of topic), else 'presence#' || 32 hex digits of the topic's
-- SHA-256 || ':' || the topic's first bytes.  LISTEN it quoted:
--   EXECUTE 'LISTEN ' || quote_ident(presence_channel('room:lobby'));
CREATE FUNCTION presence_channel(topic text)
RETURNS text
AS 'MODULE_PATHNAME', 'presence_channel'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

REVOKE ALL ON FUNCTION presence_channel(text) FROM PUBLIC;

-- pg_dump keeps the seqs, and only them.  The tables are the extension's,
-- so pg_dump leaves their rows out unless marked here.  tep_presence and
-- tep_presence_worker are live connection state: a restored copy has none
-- of the connections they describe (its rows would be ghosts until pruned),
-- so a restore starts with no entries and no workers.  presence_topic_seq
-- is kept, so that seq never goes back: a client holding seq 57 of a topic
-- would otherwise drop the restored database's new diffs 1 to 57 as old.
SELECT pg_catalog.pg_extension_config_dump('presence_topic_seq', '');

-- Worker ownership.  A worker id belongs to the role that registered it
-- (presence_worker_start, or the first presence_track of the id): only that
-- role, the roles that have its privileges (pg_has_role ... 'USAGE') and
-- superusers may act on it through the functions; others get 42501.  A row
-- Tep writes directly is owned by the role that writes it (the default).
-- NULL: no owner, any role granted the functions may use the worker, as in
-- 1.0; presence_worker_start gives it one.  Role names are kept as regrole
-- (the role's oid), so a renamed role keeps its workers.
ALTER TABLE tep_presence_worker ADD COLUMN owner pg_catalog.regrole;

-- The rows of a 1.0 installation: a connection-bound worker whose backend
-- still runs belongs to that backend's role (the role that registered it);
-- the others (leased, heartbeat rows) have no owner until
-- presence_worker_start registers them again.
UPDATE tep_presence_worker AS w
   SET owner = a.usesysid
  FROM pg_catalog.pg_stat_get_activity(NULL) AS a
 WHERE a.pid OPERATOR(pg_catalog.=) w.backend_pid
   AND a.backend_start OPERATOR(pg_catalog.=) w.backend_start;

ALTER TABLE tep_presence_worker ALTER COLUMN owner
    SET DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole;
