-- presence 1.0 -> 1.1.  CREATE EXTENSION presence installs 1.0 and then
-- runs this script; ALTER EXTENSION presence UPDATE brings a 1.0
-- installation here.

\echo Use "ALTER EXTENSION presence UPDATE TO '1.1'" to load this file. \quit

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
