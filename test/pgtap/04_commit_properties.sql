-- Properties over committed changes (seqs are given at commit), checked
-- after random sequences of track / untrack / set_status / untrack_by_fd /
-- clear, each in its own transaction; some roll back whole, some inside a
-- savepoint (a PL/pgSQL exception block) that rolls back:
--
--  * counts equal list lengths (local and global, by kind);
--  * the snapshot's seq equals the number of committed diffs the topic has
--    had (the seq of its last diff): rolled-back changes take no seq;
--  * the snapshot's entries are presence_list_global's.
--
-- Runs outside a transaction block (each operation commits), and leaves the
-- tables empty.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
SELECT plan(7);
SELECT setseed(0.4243);

DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
CREATE TEMP TABLE expected_seq (topic text PRIMARY KEY, seq bigint NOT NULL);
INSERT INTO expected_seq SELECT 't' || n, 0 FROM generate_series(1, 3) n;
CREATE TEMP TABLE outcomes (what text);

-- One random operation; expected_seq counts the diffs it should send.
CREATE FUNCTION pg_temp.random_op(i int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text := 't' || (1 + floor(random() * 3)::int);
    w text := 'w' || (1 + floor(random() * 3)::int);
    f int := floor(random() * 6)::int;
    r float8 := random();
    ok boolean;
    k int;
BEGIN
    IF r < 0.45 THEN
        IF random() < 0.3 THEN
            ok := presence_track(t, f, 'p' || f, 'agent_for', 'bot' || f, w);
        ELSE
            ok := presence_track(t, f, 'p' || f, 'human', '', w);
        END IF;
        UPDATE expected_seq SET seq = seq + ok::int WHERE topic = t;
    ELSIF r < 0.65 THEN
        ok := presence_set_status(t, f, 'busy', 'n' || i, 0, w);
        UPDATE expected_seq SET seq = seq + ok::int WHERE topic = t;
    ELSIF r < 0.85 THEN
        ok := presence_untrack(t, f, w);
        UPDATE expected_seq SET seq = seq + ok::int WHERE topic = t;
    ELSIF r < 0.97 THEN
        UPDATE expected_seq e SET seq = e.seq + c.n
          FROM (SELECT topic, count(*) n FROM tep_presence
                 WHERE worker_id = w AND fd = f GROUP BY topic) c
         WHERE e.topic = c.topic;
        k := presence_untrack_by_fd(f, w);
    ELSE
        UPDATE expected_seq e SET seq = e.seq + c.n
          FROM (SELECT topic, count(*) n FROM tep_presence
                 WHERE worker_id = w GROUP BY topic) c
         WHERE e.topic = c.topic;
        k := presence_clear(w);
    END IF;
END
$$;

-- n operations, each committed, rolled back, or committed after two more
-- operations of which one rolled back to its savepoint.
CREATE PROCEDURE pg_temp.random_ops(n int) LANGUAGE plpgsql AS $$
DECLARE
    r float8;
    rollbacks int := 0;
BEGIN
    FOR i IN 1 .. n LOOP
        r := random();
        PERFORM pg_temp.random_op(i);
        IF r < 0.15 THEN
            ROLLBACK;
            rollbacks := rollbacks + 1;
            CONTINUE;
        ELSIF r < 0.35 THEN
            BEGIN
                PERFORM pg_temp.random_op(i);
                RAISE EXCEPTION 'roll back to the savepoint';
            EXCEPTION WHEN raise_exception THEN
                INSERT INTO outcomes VALUES ('savepoint');
            END;
            PERFORM pg_temp.random_op(i);
        END IF;
        INSERT INTO outcomes VALUES ('commit');
        COMMIT;
    END LOOP;
    INSERT INTO outcomes SELECT 'rollback' FROM generate_series(1, rollbacks);
END
$$;

CREATE TEMP TABLE mismatches (round int, what text);
CREATE TEMP TABLE mixes (round int, kinds_and_workers bigint);
CREATE FUNCTION pg_temp.check_round(round int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text; w text;
BEGIN
    INSERT INTO mixes
        SELECT round, count(DISTINCT (kind, worker_id)) FROM tep_presence;
    FOREACH t IN ARRAY ARRAY['t1', 't2', 't3'] LOOP
        FOREACH w IN ARRAY ARRAY['w1', 'w2', 'w3', 'w4'] LOOP
            IF presence_count(t, w) <> (SELECT count(*) FROM presence_list(t, w))
               OR presence_count_humans(t, w) <> (SELECT count(*) FROM presence_list(t, w) WHERE kind = 'human')
               OR presence_count_agents(t, w) <> (SELECT count(*) FROM presence_list(t, w) WHERE kind = 'agent_for')
               OR presence_count(t, w) <> (SELECT count(*) FROM tep_presence p WHERE p.topic = t AND p.worker_id = w) THEN
                INSERT INTO mismatches VALUES (round, 'local ' || t || ' ' || w);
            END IF;
        END LOOP;
        IF presence_count_global(t) <> (SELECT count(*) FROM presence_list_global(t))
           OR presence_count_humans_global(t) <> (SELECT count(*) FROM presence_list_global(t) WHERE kind = 'human')
           OR presence_count_agents_global(t) <> (SELECT count(*) FROM presence_list_global(t) WHERE kind = 'agent_for')
           OR presence_count_global(t) <> presence_count(t, 'w1') + presence_count(t, 'w2') + presence_count(t, 'w3')
           OR presence_count_global(t) <> (SELECT count(*) FROM tep_presence p WHERE p.topic = t) THEN
            INSERT INTO mismatches VALUES (round, 'global ' || t);
        END IF;
        IF (presence_snapshot(t) ->> 'seq')::bigint <> (SELECT seq FROM expected_seq e WHERE e.topic = t) THEN
            INSERT INTO mismatches VALUES (round, 'seq ' || t);
        END IF;
        IF (SELECT coalesce(json_agg(json_build_array(e ->> 'worker_id', (e ->> 'fd')::int,
                    e ->> 'principal', e ->> 'state', e ->> 'note'))::text, '[]')
              FROM json_array_elements(presence_snapshot(t) -> 'entries') e)
           <> (SELECT coalesce(json_agg(json_build_array(worker_id, fd, principal_id,
                    status_state, status_note))::text, '[]')
                 FROM presence_list_global(t)) THEN
            INSERT INTO mismatches VALUES (round, 'snapshot entries ' || t);
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    FOR r IN 1 .. 20 LOOP
        CALL pg_temp.random_ops(30);
        PERFORM pg_temp.check_round(r);
    END LOOP;
END
$$;

SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'local%'), 0::bigint,
          'local counts (all, humans, agents) equal presence_list lengths (20 rounds x 30 random transactions)');
SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'global%'), 0::bigint,
          'global counts equal presence_list_global lengths and the sum over workers');
SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'seq%'), 0::bigint,
          'snapshot seq equals the number of committed diffs of its topic');
SELECT is((SELECT count(*) FROM mismatches WHERE what LIKE 'snapshot%'), 0::bigint,
          'snapshot entries are presence_list_global''s, in its order');
SELECT cmp_ok((SELECT sum(seq) FROM expected_seq), '>', 100::numeric,
              'the random operations did produce diffs');
SELECT ok((SELECT max(kinds_and_workers) FROM mixes) >= 4,
          'the random state mixes kinds and workers');
SELECT ok((SELECT count(DISTINCT what) FROM outcomes) = 3,
          'transactions committed, rolled back, and rolled back to a savepoint');

SELECT * FROM finish();
DELETE FROM tep_presence;
DELETE FROM tep_presence_worker;
DELETE FROM presence_topic_seq;
