--
-- presence_schema: the tables are Tep's (columns, types, key), carry the
-- constraints and indexes SPEC asks for, and the extension is not
-- relocatable.
--
SET client_min_messages = warning;

-- Start from empty tables (other files may leave rows behind).
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT extname, extversion, extrelocatable FROM pg_extension
 WHERE extname = 'presence';

-- Columns and types, in table order.
SELECT attrelid::regclass AS tab, attnum, attname,
       format_type(atttypid, atttypmod) AS type, attnotnull
  FROM pg_attribute
 WHERE attrelid IN ('tep_presence'::regclass, 'tep_presence_worker'::regclass,
                    'presence_topic_seq'::regclass)
   AND attnum > 0 AND NOT attisdropped
 ORDER BY attrelid::regclass::text, attnum;

-- Keys and indexes.
SELECT tablename, indexdef FROM pg_indexes
 WHERE tablename IN ('tep_presence', 'tep_presence_worker', 'presence_topic_seq')
 ORDER BY tablename, indexname;
-- The unique key covers exactly {worker_id, topic, fd}, so Tep's
-- ON CONFLICT (worker_id, topic, fd) infers it.
SELECT array_agg(a.attname ORDER BY a.attname) AS unique_key_columns
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
 WHERE i.indrelid = 'tep_presence'::regclass AND i.indisunique
 GROUP BY i.indexrelid;

-- Constraints reject bad kinds, states and kind/agent_id mismatches (for
-- rows written directly, as Tep's mirror does).
CREATE TEMP TABLE cases (n serial, q text);
INSERT INTO cases (q) VALUES
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('w', 't', 1, 'p', 'robot', 'x', 1)$$),
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('w', 't', 1, 'p', 'agent_for', '', 1)$$),
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('w', 't', 1, 'p', 'human', 'bot', 1)$$),
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts, status_state) VALUES ('w', 't', 1, 'p', 1, 'away')$$),
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id) VALUES ('w', 't', 1, 'p')$$),
  ($$INSERT INTO tep_presence_worker (worker_id, last_seen_ts, lease) VALUES ('w', 1, '1 min')$$),
  ($$INSERT INTO tep_presence_worker (worker_id, last_seen_ts, lease, lease_until) VALUES ('w', 1, '0', now())$$),
  ($$INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid) VALUES ('w', 1, 1)$$),
  ($$INSERT INTO tep_presence_worker (worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until) VALUES ('w', 1, 1, now(), '1 min', now())$$),
  -- and accept good ones; the last one hits the key (23505)
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id, since_ts) VALUES ('w', 't', 1, 'p', 'agent_for', 'bot', 1) RETURNING kind$$),
  ($$INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES ('w', 't', 1, 'p', 1) RETURNING 1$$);
SELECT n, pg_temp.try(q) FROM cases ORDER BY n;
SELECT worker_id, topic, fd, principal_id, kind, agent_id, since_ts,
       status_state, status_note, status_until FROM tep_presence;

-- Clean up.
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;

-- Only the primary key of presence_topic_seq is maintained (the commit
-- step writes it from C), so another index is refused at the next commit
-- that sends a diff, and nothing is changed or sent.
CREATE INDEX presence_topic_seq_extra_idx ON presence_topic_seq (seq);
SELECT presence_track('schema:t', 1, 'u', worker_id => 'gw-schema') AS refused;
SELECT count(*) AS entries_after FROM tep_presence WHERE worker_id = 'gw-schema';
DROP INDEX presence_topic_seq_extra_idx;
SELECT presence_track('schema:t', 1, 'u', worker_id => 'gw-schema') AS tracked;
SELECT seq FROM presence_topic_seq WHERE topic = 'schema:t';
SELECT presence_worker_stop('gw-schema') AS stopped;
DELETE FROM presence_topic_seq;

-- 1.1 installs only in a UTF8 database.
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_presence_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c regress_presence_ascii
SET client_min_messages = warning;
-- (terse: PostgreSQL 19 adds the script's line as CONTEXT)
\set VERBOSITY terse
CREATE EXTENSION presence;
\set VERBOSITY default
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'presence';
\c :regress_db
DROP DATABASE regress_presence_ascii;

-- A transaction that tracks and then drops the extension commits: its
-- diffs went with the rows they describe.
CREATE DATABASE regress_presence_drop TEMPLATE template0 ENCODING 'UTF8';
\c regress_presence_drop
SET client_min_messages = warning;
CREATE EXTENSION presence;
LISTEN tep_broadcast;
BEGIN;
SELECT presence_track('t', 1, 'u', worker_id => 'gw-drop') AS tracked;
DROP EXTENSION presence;
COMMIT;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'presence';
\c :regress_db
DROP DATABASE regress_presence_drop;
