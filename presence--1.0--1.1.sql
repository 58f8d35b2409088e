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

-- The epoch every diff and snapshot carries: it changes whenever this
-- server's history of seqs may differ from what a listener saw (a crash, a
-- promotion, a restore, the extension created again).  A client that
-- resumes from a seq it kept compares this first.
CREATE FUNCTION presence_epoch()
RETURNS text
AS 'MODULE_PATHNAME', 'presence_epoch'
LANGUAGE C STABLE;

REVOKE ALL ON FUNCTION presence_epoch() FROM PUBLIC;
