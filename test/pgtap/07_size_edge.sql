-- The size bound at its edge: tep_presence's CHECK accepts an entry if and
-- only if its longest diff (a status diff with the widest seq, its epoch
-- and a signature), as the extension actually encodes and sends it, fits
-- NOTIFY (< 8000 bytes).  The CHECK counts without encoding
-- (longest_diff_bytes in src/wire.c); this pins it to the encoder.
--
-- Each random case starts from an entry with the widest fd, since_ts and
-- until_ts, escapes in every string, and one field (the fine one: topic,
-- principal, agent_id, worker_id, note or meta) ending in k copies of one
-- character (control characters that escape to six bytes, quotes and
-- backslashes to two, multi-byte characters, plain ASCII).  Another field
-- (note, or meta when the note is the fine one) is filled with control
-- characters until the entry sits at the limit; then k* is the first k
-- the CHECK refuses.  A second connection (dblink) commits the entries
-- k*-1 and k*-2 with the topic's seq one below the largest bigint, and
-- calls presence_set_status with their own values: a status diff with
-- the widest seq, received by a third connection.  Then:
--  * the accepted edge entry's diff is < 8000 bytes (with 75 for the
--    signature when the server does not sign: ,"sig":"<64 hex>");
--  * the refused entry's would not be: the edge diff plus one more
--    character's bytes (measured: the edge diff minus the one before it)
--    is >= 8000.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
BEGIN;
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT plan(7);
CREATE TEMP TABLE seed AS SELECT random() * 2 - 1 AS s;
SELECT setseed(s) FROM seed;
SELECT diag('random cases, setseed(' || s || ')') FROM seed;

-- The cases: fine field, its character, the other fields' content.
CREATE TEMP TABLE cases AS
SELECT i,
       (ARRAY['topic', 'principal', 'agent_id', 'worker_id', 'note', 'meta'])[1 + i % 6] AS fine,
       (ARRAY[chr(1), chr(31), '"', '\', E'\n', 'é', '€', '🦊', 'a', chr(127), '中'])
           [1 + (i / 6) % 11] AS unit,
       -- at least 100 characters: the N before :presence:<topic> keeps
       -- three digits
       'edge:' || i || ':' || repeat('t', 92) || (ARRAY['', 'ü', '☕', chr(2)])[1 + i % 4] AS topic,
       repeat(chr(3), 120 + (random() * 30)::int) AS principal,
       CASE WHEN i % 2 = 0 THEN 'agent_for' ELSE 'human' END AS kind,
       CASE WHEN i % 2 = 0 THEN 'ag' || repeat(chr(4), 120 + (random() * 30)::int) ELSE '' END AS agent,
       'edgew:' || i || ':' || repeat(chr(5), 120 + (random() * 30)::int) AS worker,
       -- the note's own start, when it is the fine field: 700 control
       -- characters (4200 bytes in JSON)
       CASE WHEN i % 6 = 4 THEN repeat(chr(6), 700) ELSE '' END AS note,
       (ARRAY['available', 'busy', 'blocked'])[1 + i % 3] AS state,
       2147483647 AS fd,
       9223372036854775807::bigint AS since_ts,
       (ARRAY[9223372036854775807, 0, 4102444800])[1 + i % 3]::bigint AS until_ts,
       24 AS k_max
  FROM generate_series(0, 65) i;

-- Case i's entry with m control characters in its coarse field and k
-- copies of its character in its fine field.
CREATE FUNCTION pg_temp.entry(c cases, m int, k int) RETURNS tep_presence
LANGUAGE plpgsql AS $$
DECLARE
    e tep_presence;
    fine text := repeat(c.unit, k);
BEGIN
    e.worker_id := c.worker || CASE c.fine WHEN 'worker_id' THEN fine ELSE '' END;
    e.topic := c.topic || CASE c.fine WHEN 'topic' THEN fine ELSE '' END;
    e.fd := c.fd;
    e.principal_id := c.principal || CASE c.fine WHEN 'principal' THEN fine ELSE '' END;
    e.kind := c.kind;
    e.agent_id := c.agent || CASE WHEN c.fine = 'agent_id' AND c.kind = 'agent_for' THEN fine ELSE '' END;
    e.since_ts := c.since_ts;
    e.status_state := c.state;
    e.status_note := c.note || CASE c.fine WHEN 'note' THEN fine ELSE repeat(chr(1), m) END;
    e.status_until := c.until_ts;
    e.meta := jsonb_build_object('f', CASE c.fine WHEN 'meta' THEN fine ELSE '' END,
                                 'c', CASE c.fine WHEN 'note' THEN repeat(chr(1), m) ELSE '' END);
    RETURN e;
END
$$;

-- Whether tep_presence's CHECK accepts the entry (its row is not kept).
-- Refused: the diff-size error (22023); any other error fails the test.
CREATE FUNCTION pg_temp.accepted(e tep_presence) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tep_presence SELECT e.*;
    RAISE SQLSTATE 'ZE001';
EXCEPTION
    WHEN invalid_parameter_value THEN
        IF SQLERRM NOT LIKE '%too long for one presence diff%' THEN
            RAISE;
        END IF;
        RETURN false;
    WHEN others THEN
        IF SQLSTATE <> 'ZE001' THEN
            RAISE;
        END IF;
        RETURN true;
END
$$;

-- The edge of each case: m, the most control characters in the coarse
-- field with which k_max/2 is accepted; then k*, the first k refused.
CREATE TEMP TABLE edges (i int, m int, k_star int);
DO $$
DECLARE
    c cases;
    m_max int;
    lo int;
    hi int;
    mid int;
BEGIN
    FOR c IN SELECT * FROM cases WHERE fine <> 'agent_id' OR kind = 'agent_for' ORDER BY i LOOP
        -- the note holds 1024 bytes; meta's value, about 2048 / 6
        m_max := CASE c.fine WHEN 'note' THEN 330 ELSE 1024 END;
        CONTINUE WHEN pg_temp.accepted(pg_temp.entry(c, m_max, c.k_max / 2))
            OR NOT pg_temp.accepted(pg_temp.entry(c, 0, c.k_max / 2));
        lo := 0; hi := m_max;          -- accepted at lo, refused at hi
        WHILE hi - lo > 1 LOOP
            mid := (lo + hi) / 2;
            IF pg_temp.accepted(pg_temp.entry(c, mid, c.k_max / 2)) THEN lo := mid; ELSE hi := mid; END IF;
        END LOOP;
        -- refused at k_max: one more coarse character (6 bytes) was, and
        -- k_max / 2 more of the fine one are at least as many bytes
        CONTINUE WHEN pg_temp.accepted(pg_temp.entry(c, lo, c.k_max));
        mid := lo;
        lo := c.k_max / 2; hi := c.k_max;
        WHILE hi - lo > 1 LOOP
            IF pg_temp.accepted(pg_temp.entry(c, mid, (lo + hi) / 2)) THEN
                lo := (lo + hi) / 2;
            ELSE
                hi := (lo + hi) / 2;
            END IF;
        END LOOP;
        INSERT INTO edges VALUES (c.i, mid, hi);
    END LOOP;
END
$$;

SELECT ok((SELECT count(DISTINCT c.fine) = 6 AND count(DISTINCT c.unit) = 11 AND count(*) >= 50
             FROM edges JOIN cases c USING (i)),
          'edges found for every field and character (' || (SELECT count(*) FROM edges) || ' cases)');

-- Send the status diffs of k*-2 and k*-1, each committed on its own.
DO $$
DECLARE
    conn text := format('host=%s port=%s dbname=%s user=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1),
         current_setting('port'), current_database(), current_user);
BEGIN
    PERFORM dblink_connect('edge_listener', conn);
    PERFORM dblink_connect('edge_writer', conn);
    PERFORM dblink_exec('edge_listener', 'LISTEN tep_broadcast');
    PERFORM dblink_exec('edge_writer',
        'DELETE FROM tep_presence WHERE worker_id LIKE ''edgew:%'';'
        ' DELETE FROM tep_presence_worker WHERE worker_id LIKE ''edgew:%'';'
        ' DELETE FROM presence_topic_seq WHERE topic LIKE ''edge:%''');
END
$$;
CREATE TEMP TABLE sent (n serial, i int, k int);
DO $$
DECLARE
    d record;
    e tep_presence;
BEGIN
    FOR d IN SELECT c, g.k, edges.i FROM edges JOIN cases c USING (i),
                    LATERAL (VALUES (edges.k_star - 2), (edges.k_star - 1)) g(k)
              ORDER BY edges.i, g.k LOOP
        e := pg_temp.entry(d.c, (SELECT m FROM edges WHERE i = d.i), d.k);
        PERFORM dblink_exec('edge_writer', format(
            'INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES (%L, 4102444800);'
            ' INSERT INTO tep_presence SELECT (%L::tep_presence).*;'
            ' INSERT INTO presence_topic_seq VALUES (%L, 9223372036854775806)',
            e.worker_id, e, e.topic));
        -- The entry went in with its status, as Tep writes one; a status
        -- diff of it as it is comes from set_meta with its own meta
        -- (set_status refuses an until_ts over 100 years ahead, and the
        -- widest one is a Tep writer's).
        PERFORM * FROM dblink('edge_writer',
            format('SELECT presence_set_meta(%L, %s, %L::jsonb, %L)', e.topic, e.fd,
                   e.meta, e.worker_id)) AS t(r boolean);
        INSERT INTO sent (i, k) VALUES (d.i, d.k);
        PERFORM dblink_exec('edge_writer', format(
            'DELETE FROM tep_presence WHERE worker_id = %L;'
            ' DELETE FROM tep_presence_worker WHERE worker_id = %L;'
            ' DELETE FROM presence_topic_seq WHERE topic = %L',
            e.worker_id, e.worker_id, e.topic));
    END LOOP;
END
$$;
DO $$ BEGIN PERFORM * FROM dblink('edge_listener', 'SELECT 1') AS t(x int); END $$;
CREATE TEMP TABLE got AS
SELECT row_number() OVER () AS n, extra,
       octet_length(extra)
         + CASE WHEN extra LIKE '%,"sig":"%' THEN 0 ELSE octet_length(',"sig":""') + 64 END AS widest
  FROM dblink_get_notify('edge_listener');

SELECT is((SELECT count(*) FROM got), (SELECT count(*) FROM sent),
          'one status diff per entry sent');
SELECT is((SELECT count(*) FROM got g JOIN sent s USING (n) JOIN edges e USING (i)
             JOIN cases c USING (i)
            WHERE g.extra LIKE '%"seq":9223372036854775807,%'
              AND g.extra LIKE '%"kind":"status",%'
              AND g.extra LIKE '%,"since":9223372036854775807,%'
              AND g.extra LIKE '%,"fd":2147483647,%'
              AND starts_with(g.extra, length('presence:' || (pg_temp.entry(c, e.m, s.k)).topic)
                               || ':presence:' || (pg_temp.entry(c, e.m, s.k)).topic || '{')),
          (SELECT count(*) FROM sent),
          'each is its entry''s status diff, with the widest seq, since and fd');

CREATE TEMP TABLE edge_bytes AS
SELECT s.i, max(g.widest) FILTER (WHERE s.k = e.k_star - 1) AS at_edge,
       max(g.widest) FILTER (WHERE s.k = e.k_star - 1)
         - max(g.widest) FILTER (WHERE s.k = e.k_star - 2) AS per_char
  FROM got g JOIN sent s USING (n) JOIN edges e USING (i)
 GROUP BY s.i;
SELECT is((SELECT count(*) FROM edge_bytes WHERE at_edge >= 8000), 0::bigint,
          'every entry the CHECK accepts has a longest diff under 8000 bytes');
SELECT is((SELECT count(*) FROM edge_bytes WHERE at_edge + per_char < 8000), 0::bigint,
          'every entry the CHECK refuses (one character more) would have a longest diff of 8000 bytes or more');
SELECT ok((SELECT bool_and(per_char BETWEEN 1 AND 12) FROM edge_bytes),
          'one character is 1 to 12 bytes of a diff (the topic''s count twice)');
SELECT diag('widest diffs at the edge: ' || min(at_edge) || ' to ' || max(at_edge) || ' bytes') FROM edge_bytes;
SELECT cmp_ok((SELECT max(8000 - at_edge) FROM edge_bytes), '<=', 12,
          'the accepted edge entries sit within 12 bytes of the limit');

DO $$
BEGIN
    PERFORM dblink_disconnect('edge_writer');
    PERFORM dblink_disconnect('edge_listener');
END
$$;

SELECT * FROM finish();
ROLLBACK;
