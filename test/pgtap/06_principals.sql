-- presence_principals agrees with the entries, for random populations
-- (principals with 0-3 human connections and 0-3 agent entries over 0-2
-- agent ids, random states, two workers): one row per principal; humans,
-- agents (distinct agent ids), connections and since recomputed from the
-- table; the state rule (busy beats available beats blocked, over the
-- humans, else over the agents); meta; presence_count_principals; the
-- sums equal the global counts.  All in one transaction, rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS presence;
BEGIN;
SELECT plan(7);
SELECT setseed(0.4242);

-- 30 topics, each with up to 8 principals.
DO $$
DECLARE
    t int;
    p int;
    fd int := 0;
BEGIN
    FOR t IN 1 .. 30 LOOP
        FOR p IN 1 .. floor(random() * 9)::int LOOP
            FOR h IN 1 .. floor(random() * 4)::int LOOP
                fd := fd + 1;
                PERFORM presence_track('tapp:' || t, fd, 'user:' || p, worker_id => 'tapp-w' || (fd % 2),
                                       meta => jsonb_build_object('fd', fd));
                PERFORM presence_set_status('tapp:' || t, fd,
                    (ARRAY['available', 'busy', 'blocked'])[1 + floor(random() * 3)::int], '', 0,
                    'tapp-w' || (fd % 2));
            END LOOP;
            FOR a IN 1 .. floor(random() * 4)::int LOOP
                fd := fd + 1;
                PERFORM presence_track('tapp:' || t, fd, 'user:' || p, 'agent_for',
                                       'bot-' || floor(random() * 2)::int, 'tapp-w' || (fd % 2),
                                       jsonb_build_object('agent_fd', fd));
                PERFORM presence_set_status('tapp:' || t, fd,
                    (ARRAY['available', 'busy', 'blocked'])[1 + floor(random() * 3)::int], '', 0,
                    'tapp-w' || (fd % 2));
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

CREATE TEMP TABLE got AS
SELECT t.topic, p.*
  FROM (SELECT DISTINCT topic FROM tep_presence WHERE topic LIKE 'tapp:%') t,
       presence_principals(t.topic) p;

CREATE TEMP TABLE want AS
SELECT topic, principal_id,
       count(*) FILTER (WHERE kind = 'human') AS humans,
       count(DISTINCT agent_id) FILTER (WHERE kind = 'agent_for') AS agents,
       count(*) AS connections,
       min(since_ts) AS since,
       CASE
         WHEN bool_or(kind = 'human') THEN
           CASE WHEN bool_or(kind = 'human' AND status_state = 'busy') THEN 'busy'
                WHEN bool_or(kind = 'human' AND status_state = 'available') THEN 'available'
                ELSE 'blocked' END
         ELSE
           CASE WHEN bool_or(status_state = 'busy') THEN 'busy'
                WHEN bool_or(status_state = 'available') THEN 'available'
                ELSE 'blocked' END
       END AS state,
       NULL::jsonb AS meta
  FROM tep_presence WHERE topic LIKE 'tapp:%'
 GROUP BY topic, principal_id;
-- meta: the newest human entry's, else the newest agent entry's (ties:
-- the greater worker id, then fd).
UPDATE want w SET meta = (
    SELECT e.meta FROM tep_presence e
     WHERE e.topic = w.topic AND e.principal_id = w.principal_id
     ORDER BY e.kind = 'human' DESC, e.since_ts DESC, e.worker_id COLLATE "C" DESC, e.fd DESC
     LIMIT 1);

SELECT ok((SELECT count(*) FROM want) > 50, 'the population has principals (' || (SELECT count(*) FROM want) || ')');
SELECT is((SELECT count(*) FROM got), (SELECT count(*) FROM want), 'one row per principal and topic');
SELECT is((SELECT count(*) FROM (
             SELECT topic, principal_id, humans, agents, connections, since, state FROM got
             EXCEPT SELECT topic, principal_id, humans, agents, connections, since, state FROM want) d),
          0::bigint, 'humans, agents, connections, since and state as recomputed from the table');
SELECT ok((SELECT count(DISTINCT state) FROM got WHERE humans > 0) = 3
          AND (SELECT count(*) FROM got WHERE humans = 0) > 0,
          'the cases cover every state, and principals with agents only');
SELECT is((SELECT count(*) FROM (SELECT DISTINCT topic FROM want) t
            WHERE presence_count_principals(t.topic)
                  <> (SELECT count(*) FROM want w WHERE w.topic = t.topic)),
          0::bigint, 'presence_count_principals = the rows of presence_principals');
SELECT is((SELECT count(*) FROM (SELECT DISTINCT topic FROM want) t
            WHERE (SELECT sum(connections) FROM got g WHERE g.topic = t.topic) <> presence_count_global(t.topic)
               OR (SELECT sum(humans) FROM got g WHERE g.topic = t.topic) <> presence_count_humans_global(t.topic)),
          0::bigint, 'the sums of connections and humans = the global counts');
SELECT is((SELECT count(*) FROM got g JOIN want w USING (topic, principal_id)
            WHERE g.meta IS DISTINCT FROM w.meta), 0::bigint,
          'meta is the newest human entry''s, else the newest agent entry''s');

SELECT * FROM finish();
ROLLBACK;
