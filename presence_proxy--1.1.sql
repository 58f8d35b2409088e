-- presence_proxy 1.1: presence 1.1's SQL API in a proxy database, each call
-- routed with PL/Proxy to the shard databases (docs/scaling.md).
--
-- The shards are the partitions of the PL/Proxy cluster 'presence', a
-- foreign server the administrator creates after this extension:
--
--   CREATE SERVER presence FOREIGN DATA WRAPPER plproxy OPTIONS (
--       partition_0 'host=db1 dbname=presence',
--       partition_1 'host=db2 dbname=presence');
--   CREATE USER MAPPING FOR PUBLIC SERVER presence;
--
-- Every public function here has the name, signature and defaults of
-- presence's own, so a gateway works unchanged against the proxy.  Topic
-- functions run on the shard of hashtext(topic); worker-wide ones on every
-- shard, their results combined.  Each public function is a SQL wrapper
-- over an internal PL/Proxy function in schema presence_proxy: the wrapper
-- resolves worker_id on the proxy (PL/Proxy would pass a NULL on, and the
-- shard would make a worker bound to PL/Proxy's pooled connection).
--
-- Identity: nothing here is SECURITY DEFINER.  Every function runs as its
-- caller, so PL/Proxy connects to the shards as the calling role (its user
-- mapping, or the PUBLIC one, with user=<current_user> appended when the
-- partition's connection string names no user), and the shard checks that
-- role's ownership of workers exactly as on one server.  The proxy holds
-- no privilege of its own: an app role is granted EXECUTE on the public
-- functions and USAGE on schema presence_proxy and its functions (README,
-- "More than one server").
--
-- The pattern every function follows (a new one too):
--   * SET search_path = pg_catalog, pg_temp (pg_temp last: no temp type,
--     domain or table is found before the catalog's), except the PL/Proxy
--     functions, whose bodies name only presence_proxy.* objects;
--   * every function, table and non-keyword type in a body schema-qualified
--     (pg_catalog.count, pg_catalog.pg_foreign_server, pg_catalog.text);
--   * no SECURITY DEFINER: that would make PL/Proxy connect as the owner.
-- To mirror a new presence function: a PL/Proxy function in presence_proxy
-- (RUN ON presence_proxy.topic_hash(topic); for a worker-wide one, RUN ON
-- shard and presence_proxy.sum_on_shards) and a public wrapper with
-- presence's signature, its body
--   AS $$ SELECT presence_proxy.f(topic, ..., presence_proxy.worker(worker_id)) $$
-- with the SET clause above; see docs/scaling.md, "Adding a function".

\echo Use "CREATE EXTENSION presence_proxy" to load this file. \quit

CREATE SCHEMA presence_proxy;
REVOKE ALL ON SCHEMA presence_proxy FROM PUBLIC;

-- presence's row type, column for column: PL/Proxy maps the shard's result
-- columns to it by name.
CREATE TYPE tep_presence AS (
    worker_id    text,
    topic        text,
    fd           integer,
    principal_id text,
    kind         text,
    agent_id     text,
    since_ts     bigint,
    status_state text,
    status_note  text,
    status_until bigint,
    meta         jsonb
);

-- presence_history's row type, for presence_history().
CREATE TYPE presence_history AS (
    topic        text,
    worker_id    text,
    fd           integer,
    principal_id text,
    kind         text,
    agent_id     text,
    meta         jsonb,
    joined_ts    bigint,
    left_ts      bigint,
    reason       text
);

-- Routing -----------------------------------------------------------------

-- The partitions of the cluster: partition_N options of the foreign server
-- 'presence', by N.
CREATE FUNCTION presence_proxy.partitions(OUT shard integer, OUT connstr text)
RETURNS SETOF record
LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.substr(o, 11, pg_catalog.strpos(o, '=') - 11)::integer,
           pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1)
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) AS o
     WHERE s.srvname = 'presence' AND o LIKE 'partition\_%=%'
     ORDER BY 1
$$;

-- The hash PL/Proxy routes a topic by.  A NULL topic goes to the shard of
-- '' so that the shard rejects it with presence's own error.
CREATE FUNCTION presence_proxy.topic_hash(topic text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.hashtext(coalesce(topic, '')) $$;

-- The partition a topic is on, as PL/Proxy computes it: hash & (n - 1), or
-- abs(hash % n) with the cluster option modular_mapping '1'.
CREATE FUNCTION presence_proxy.shard_of(topic text)
RETURNS integer
LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    modular boolean;
    h integer := presence_proxy.topic_hash(topic);
BEGIN
    SELECT pg_catalog.count(*) INTO n FROM presence_proxy.partitions();
    IF n = 0 THEN
        RAISE EXCEPTION 'presence_proxy: no shards configured'
              USING ERRCODE = 'undefined_object',
                    HINT = 'CREATE SERVER presence FOREIGN DATA WRAPPER plproxy OPTIONS (partition_0 ''...'', ...)';
    END IF;
    SELECT coalesce(pg_catalog.bool_or(o IN ('modular_mapping=1', 'modular_mapping=on',
                                  'modular_mapping=true')), false)
      INTO modular
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) AS o
     WHERE s.srvname = 'presence';
    IF modular THEN
        RETURN pg_catalog.abs(h % n);
    END IF;
    RETURN h & (n - 1);
END
$$;

-- presence_shard(topic): the connection string of the shard that holds the
-- topic, where a gateway LISTENs for its diffs.
CREATE FUNCTION presence_shard(topic text)
RETURNS text
LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be NULL'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN (SELECT p.connstr FROM presence_proxy.partitions() p
             WHERE p.shard = presence_proxy.shard_of(topic));
END
$$;

-- presence_shards(): every shard, for a gateway that listens on all.
CREATE FUNCTION presence_shards(OUT shard integer, OUT connstr text)
RETURNS SETOF record
LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.partitions() $$;

-- The worker a call acts for: worker_id, else this proxy session's
-- presence.worker_id (set by presence_worker_start).  Never the
-- connection's: calls reach the shards on PL/Proxy's pooled connections,
-- where a connection-bound worker would be another one on every shard and
-- die with a pooled connection, not with the gateway.
CREATE FUNCTION presence_proxy.worker(worker_id text)
RETURNS text
LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w pg_catalog.text := coalesce(worker_id,
                       nullif(pg_catalog.current_setting('presence.worker_id', true), ''));
BEGIN
    IF w IS NULL THEN
        RAISE EXCEPTION 'worker_id is NULL and presence.worker_id is not set: connection-bound workers cannot work through presence_proxy'
              USING ERRCODE = 'feature_not_supported',
                    DETAIL = 'Calls reach the shards on PL/Proxy''s pooled connections, not on this one.',
                    HINT = 'Use a leased worker: presence_worker_start(''gw-1'', ''30 seconds'') and presence_heartbeat(''gw-1'') within the lease.';
    END IF;
    RETURN w;
END
$$;

-- Topic functions: PL/Proxy, on the topic's shard ------------------------

CREATE FUNCTION presence_proxy.track(topic text, fd integer,
                                     principal_id text, kind text,
                                     agent_id text, worker_id text,
                                     meta jsonb)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_track;
$$;

CREATE FUNCTION presence_proxy.set_meta(topic text, fd integer, meta jsonb,
                                        worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_set_meta;
$$;

CREATE FUNCTION presence_proxy.history(topic text, from_ts bigint,
                                       to_ts bigint)
RETURNS SETOF presence_history LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_history;
$$;

CREATE FUNCTION presence_proxy.last_seen_in(principal_id text, topic text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_last_seen;
$$;

-- Without a topic: every shard's answer (the wrapper takes the greatest).
CREATE FUNCTION presence_proxy.last_seen_anywhere(principal_id text)
RETURNS SETOF bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON ALL; TARGET presence_last_seen;
$$;

CREATE FUNCTION presence_proxy.principals(topic text,
                                          OUT principal_id text,
                                          OUT humans bigint,
                                          OUT agents bigint,
                                          OUT connections bigint,
                                          OUT state text,
                                          OUT since bigint,
                                          OUT meta jsonb)
RETURNS SETOF record LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_principals;
$$;

CREATE FUNCTION presence_proxy.count_principals(topic text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count_principals;
$$;

CREATE FUNCTION presence_proxy.untrack(topic text, fd integer,
                                       worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_untrack;
$$;

CREATE FUNCTION presence_proxy.list(topic text, worker_id text)
RETURNS SETOF tep_presence LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_list;
$$;

CREATE FUNCTION presence_proxy.list_global(topic text)
RETURNS SETOF tep_presence LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_list_global;
$$;

CREATE FUNCTION presence_proxy.count(topic text, worker_id text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count;
$$;

CREATE FUNCTION presence_proxy.count_humans(topic text, worker_id text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count_humans;
$$;

CREATE FUNCTION presence_proxy.count_agents(topic text, worker_id text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count_agents;
$$;

CREATE FUNCTION presence_proxy.count_global(topic text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count_global;
$$;

CREATE FUNCTION presence_proxy.count_humans_global(topic text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count_humans_global;
$$;

CREATE FUNCTION presence_proxy.count_agents_global(topic text)
RETURNS bigint LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_count_agents_global;
$$;

CREATE FUNCTION presence_proxy.set_status(topic text, fd integer,
                                          state text, note text,
                                          until_ts bigint, worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_set_status;
$$;

CREATE FUNCTION presence_proxy.clear_status(topic text, fd integer,
                                            worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_clear_status;
$$;

-- SETOF: a NULL entry comes back as no row (a non-SETOF composite would
-- come back as a row of NULLs, which is not NULL to IS DISTINCT FROM).
CREATE FUNCTION presence_proxy.find_entry(topic text, fd integer,
                                          worker_id text)
RETURNS SETOF tep_presence LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    SELECT e.* FROM presence_find_entry(topic, fd, worker_id) e
     WHERE e IS NOT NULL;
$$;

CREATE FUNCTION presence_proxy.diff_topic(topic text)
RETURNS text LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_diff_topic;
$$;

CREATE FUNCTION presence_proxy.snapshot(topic text)
RETURNS json LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_snapshot;
$$;

CREATE FUNCTION presence_proxy.channel(topic text)
RETURNS text LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_channel;
$$;

-- Worker-wide functions: PL/Proxy, on every shard ------------------------

-- worker_start must reach every shard (RUN ON ALL, in parallel; an error
-- if one is down): it drops what a previous run of the id left, and a shard
-- it missed would keep those entries alive under the new heartbeats.
CREATE FUNCTION presence_proxy.worker_start(worker_id text, lease interval)
RETURNS SETOF text LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON ALL; TARGET presence_worker_start;
$$;

-- The others go shard by shard (RUN ON shard, a partition number), so that
-- a shard that is down does not fail the call on the others: a gateway's
-- untrack_by_fd on every socket close, or its heartbeat, must go on while
-- one shard is away (a heartbeat failing everywhere would let its lease
-- lapse on every shard).
CREATE FUNCTION presence_proxy.untrack_by_fd_on(shard integer, fd integer,
                                                worker_id text)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_untrack_by_fd(fd, worker_id);
$$;

CREATE FUNCTION presence_proxy.clear_on(shard integer, worker_id text)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_clear(worker_id);
$$;

CREATE FUNCTION presence_proxy.sweep_expired_status_on(shard integer)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_sweep_expired_status();
$$;

CREATE FUNCTION presence_proxy.history_maintain_on(shard integer)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_history_maintain();
$$;

CREATE FUNCTION presence_proxy.prune_dead_workers_on(shard integer)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_prune_dead_workers();
$$;

CREATE FUNCTION presence_proxy.heartbeat_on(shard integer, worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_heartbeat(worker_id);
$$;

CREATE FUNCTION presence_proxy.worker_stop_on(shard integer, worker_id text)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_worker_stop(worker_id);
$$;

-- Whether an error means the shard was not reached: PL/Proxy's own errors
-- (XX000 "PL/Proxy function ...": connecting, a lost connection, a
-- timeout), a connection exception (08) or a server shutting down or
-- starting (57).  Any other error is the shard's answer (bad input,
-- privileges) and stands, as on one server.
CREATE FUNCTION presence_proxy.not_reached(state text, message text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.left(state, 2) IN ('08', '57')
          OR (state = 'XX000' AND message LIKE 'PL/Proxy function %') $$;

-- call, run on every shard with $1 the shard and $2 args: the sum of its
-- integer results on the shards reached.  A shard not reached is a WARNING
-- naming it (what it holds is left to it: its own background worker
-- prunes and sweeps it); no shard reached is an error.
CREATE FUNCTION presence_proxy.sum_on_shards(caller text, call text,
                                             args text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    n integer;
    total integer := 0;
    reached boolean := false;
    err pg_catalog.text;
BEGIN
    FOR p IN SELECT * FROM presence_proxy.partitions() LOOP
        BEGIN
            EXECUTE call INTO n USING p.shard, args;
            total := total + n;
            reached := true;
        EXCEPTION WHEN OTHERS THEN
            IF NOT presence_proxy.not_reached(SQLSTATE, SQLERRM) THEN
                RAISE;
            END IF;
            err := SQLERRM;
            RAISE WARNING '%: shard % not reached: %', caller, p.shard, err;
        END;
    END LOOP;
    IF NOT reached THEN
        RAISE EXCEPTION '%: no shard reached: %', caller, coalesce(err, 'no shards configured')
              USING ERRCODE = 'connection_failure';
    END IF;
    RETURN total;
END
$$;

-- The public API: presence's names, signatures and defaults ---------------
--
-- Each runs as its caller (see the top of this file): PL/Proxy reaches the
-- shards as the calling role, and the shards check what that role may do.

CREATE FUNCTION presence_track(topic text, fd integer, principal_id text,
                               kind text DEFAULT 'human',
                               agent_id text DEFAULT '',
                               worker_id text DEFAULT NULL,
                               meta jsonb DEFAULT '{}')
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.track(topic, fd, principal_id, kind, agent_id,
                                  presence_proxy.worker(worker_id), meta) $$;

CREATE FUNCTION presence_set_meta(topic text, fd integer, meta jsonb,
                                  worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.set_meta(topic, fd, meta,
                                     presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_history(topic text, from_ts bigint, to_ts bigint)
RETURNS SETOF presence_history LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.history(topic, from_ts, to_ts) $$;

-- A principal's last second seen: in one topic, on its shard; anywhere,
-- the greatest of the shards' (NULL where none has seen it).
CREATE FUNCTION presence_last_seen(principal_id text, topic text DEFAULT NULL)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN topic IS NULL
                  THEN (SELECT pg_catalog.max(s) FROM presence_proxy.last_seen_anywhere(principal_id) s)
                  ELSE presence_proxy.last_seen_in(principal_id, topic) END $$;

CREATE FUNCTION presence_principals(topic text,
                                    OUT principal_id text,
                                    OUT humans bigint,
                                    OUT agents bigint,
                                    OUT connections bigint,
                                    OUT state text,
                                    OUT since bigint,
                                    OUT meta jsonb)
RETURNS SETOF record LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.principals(topic) $$;

CREATE FUNCTION presence_count_principals(topic text)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count_principals(topic) $$;

CREATE FUNCTION presence_history_maintain()
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.sum_on_shards('presence_history_maintain',
               'SELECT presence_proxy.history_maintain_on($1)', '{}') $$;

CREATE FUNCTION presence_untrack(topic text, fd integer,
                                 worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.untrack(topic, fd,
                                    presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_untrack_by_fd(fd integer,
                                       worker_id text DEFAULT NULL)
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.sum_on_shards('presence_untrack_by_fd',
               'SELECT presence_proxy.untrack_by_fd_on($1, $2[1]::pg_catalog.int4, $2[2])',
               ARRAY[fd::text, presence_proxy.worker(worker_id)]) $$;

CREATE FUNCTION presence_list(topic text, worker_id text DEFAULT NULL)
RETURNS SETOF tep_presence LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.list(topic, presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_list_global(topic text)
RETURNS SETOF tep_presence LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.list_global(topic) $$;

CREATE FUNCTION presence_count(topic text, worker_id text DEFAULT NULL)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count(topic, presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_count_humans(topic text, worker_id text DEFAULT NULL)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count_humans(topic, presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_count_agents(topic text, worker_id text DEFAULT NULL)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count_agents(topic, presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_count_global(topic text)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count_global(topic) $$;

CREATE FUNCTION presence_count_humans_global(topic text)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count_humans_global(topic) $$;

CREATE FUNCTION presence_count_agents_global(topic text)
RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.count_agents_global(topic) $$;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text DEFAULT '',
                                    until_ts bigint DEFAULT 0,
                                    worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.set_status(topic, fd, state, note, until_ts,
                                       presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_clear_status(topic text, fd integer,
                                      worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.clear_status(topic, fd,
                                         presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_find_entry(topic text, fd integer,
                                    worker_id text DEFAULT NULL)
RETURNS tep_presence LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.find_entry(topic, fd,
                                              presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_sweep_expired_status()
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.sum_on_shards('presence_sweep_expired_status',
               'SELECT presence_proxy.sweep_expired_status_on($1)', '{}') $$;

CREATE FUNCTION presence_clear(worker_id text DEFAULT NULL)
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.sum_on_shards('presence_clear',
               'SELECT presence_proxy.clear_on($1, $2[1])',
               ARRAY[presence_proxy.worker(worker_id)]) $$;

CREATE FUNCTION presence_diff_topic(topic text)
RETURNS text LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.diff_topic(topic) $$;

CREATE FUNCTION presence_snapshot(topic text)
RETURNS json LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.snapshot(topic) $$;

-- Each shard has its own epoch (its own history of seqs), so the proxy has
-- none to give: a topic's is in its snapshot, from the topic's shard.
CREATE FUNCTION presence_epoch()
RETURNS text LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'presence_epoch() has no single answer through presence_proxy: each shard has its own epoch'
          USING ERRCODE = 'feature_not_supported',
                HINT = 'Take a topic''s epoch from its snapshot: presence_snapshot(topic) ->> ''epoch''.';
END
$$;

CREATE FUNCTION presence_channel(topic text)
RETURNS text LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.channel(topic) $$;

-- Workers -----------------------------------------------------------------

-- Registers a leased worker on every shard and makes it this proxy
-- session's worker.  A NULL lease (bound to the connection) or a NULL id
-- (the connection's own id) would name PL/Proxy's pooled connections, so
-- both are refused.  takeover is taken for presence's signature: every
-- worker here is leased, and a leased worker is never refused for being
-- bound to another connection, so it changes nothing.
CREATE FUNCTION presence_worker_start(worker_id text DEFAULT NULL,
                                      lease interval DEFAULT NULL,
                                      takeover boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF worker_id IS NULL OR lease IS NULL THEN
        RAISE EXCEPTION '% is NULL: connection-bound workers cannot work through presence_proxy',
                        CASE WHEN worker_id IS NULL THEN 'worker_id' ELSE 'lease' END
              USING ERRCODE = 'feature_not_supported',
                    DETAIL = 'Calls reach the shards on PL/Proxy''s pooled connections, not on this one.',
                    HINT = 'Use a leased worker: presence_worker_start(''gw-1'', ''30 seconds'') and presence_heartbeat(''gw-1'') within the lease.';
    END IF;
    PERFORM presence_proxy.worker_start(worker_id, lease);
    PERFORM pg_catalog.set_config('presence.worker_id', worker_id, false);
    RETURN worker_id;
END
$$;

-- True when the worker was alive on every shard reached.  A shard that
-- does not know it (it lapsed there and was pruned) makes it false, as a
-- lapsed lease does on one server: the gateway starts again.  A shard
-- that cannot be reached is a WARNING: its lease stands or lapses there on
-- its own.  Unknown on every shard reached is presence's error.
CREATE FUNCTION presence_heartbeat(worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w pg_catalog.text := presence_proxy.worker(worker_id);
    p record;
    alive boolean := true;
    known integer := 0;
    unknown integer := 0;
BEGIN
    FOR p IN SELECT * FROM presence_proxy.partitions() LOOP
        BEGIN
            alive := presence_proxy.heartbeat_on(p.shard, w) AND alive;
            known := known + 1;
        EXCEPTION WHEN OTHERS THEN
            IF SQLERRM LIKE '%is not registered' THEN
                -- presence's 22023 for a worker the shard does not know
                unknown := unknown + 1;
            ELSIF presence_proxy.not_reached(SQLSTATE, SQLERRM) THEN
                RAISE WARNING 'presence_heartbeat: shard % not reached: %',
                              p.shard, SQLERRM;
            ELSE
                RAISE;
            END IF;
        END;
    END LOOP;
    IF known = 0 AND unknown > 0 THEN
        RAISE EXCEPTION 'worker_id "%" is not registered', w
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Call presence_worker_start() to register it again.';
    END IF;
    RETURN alive AND unknown = 0;
END
$$;

-- Drops the worker's entries and rows on every shard; the entries dropped.
-- A shard that cannot be reached is a WARNING: the lease ends the worker
-- there.  An explicit id unknown on every shard is presence's error.
CREATE FUNCTION presence_worker_stop(worker_id text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w pg_catalog.text := presence_proxy.worker(worker_id);
    p record;
    dropped integer := 0;
    known integer := 0;
    unknown integer := 0;
BEGIN
    FOR p IN SELECT * FROM presence_proxy.partitions() LOOP
        BEGIN
            dropped := dropped + presence_proxy.worker_stop_on(p.shard, w);
            known := known + 1;
        EXCEPTION WHEN OTHERS THEN
            IF SQLERRM LIKE '%is not registered' THEN
                unknown := unknown + 1;
            ELSIF presence_proxy.not_reached(SQLSTATE, SQLERRM) THEN
                RAISE WARNING 'presence_worker_stop: shard % not reached: %',
                              p.shard, SQLERRM;
            ELSE
                RAISE;
            END IF;
        END;
    END LOOP;
    -- As on one server: the session's worker may be gone already.
    IF known = 0 AND unknown > 0 AND worker_id IS NOT NULL THEN
        RAISE EXCEPTION 'worker_id "%" is not registered', w
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.current_setting('presence.worker_id', true) = w THEN
        PERFORM pg_catalog.set_config('presence.worker_id', '', false);
    END IF;
    RETURN dropped;
END
$$;

CREATE FUNCTION presence_prune_dead_workers()
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.sum_on_shards('presence_prune_dead_workers',
               'SELECT presence_proxy.prune_dead_workers_on($1)', '{}') $$;

-- Nothing is executable by PUBLIC, as in presence: an app role is granted
-- EXECUTE on the public functions (docs/scaling.md, "Setup").
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_depend d
            ON d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.objid = p.oid
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE e.extname = 'presence_proxy'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

-- presence_set_status's other forms of until_ts: PL/Proxy passes the typed
-- argument on, so the shard's own form reads (and checks) it.
CREATE FUNCTION presence_proxy.set_status_text(topic text, fd integer,
                                               state text, note text,
                                               until_ts text, worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_set_status;
$$;

CREATE FUNCTION presence_proxy.set_status_at(topic text, fd integer,
                                             state text, note text,
                                             until_ts timestamptz,
                                             worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_set_status;
$$;

CREATE FUNCTION presence_proxy.set_status_for(topic text, fd integer,
                                              state text, note text,
                                              until_ts interval,
                                              worker_id text)
RETURNS boolean LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_set_status;
$$;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text, until_ts text,
                                    worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.set_status_text(topic, fd, state, note, until_ts,
                                            presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text, until_ts timestamptz,
                                    worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.set_status_at(topic, fd, state, note, until_ts,
                                          presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text, until_ts interval,
                                    worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.set_status_for(topic, fd, state, note, until_ts,
                                           presence_proxy.worker(worker_id)) $$;

REVOKE ALL ON FUNCTION
    presence_proxy.set_status_text(text, integer, text, text, text, text),
    presence_proxy.set_status_at(text, integer, text, text, timestamptz, text),
    presence_proxy.set_status_for(text, integer, text, text, interval, text),
    presence_set_status(text, integer, text, text, text, text),
    presence_set_status(text, integer, text, text, timestamptz, text),
    presence_set_status(text, integer, text, text, interval, text)
    FROM PUBLIC;

-- Issue 23: many entries, statuses or topics in one call, a topic's snapshot as
-- rows, idle topics' retention, and the partition map for clients that
-- route a topic's calls to its shard themselves ---------------------------

-- The partition a hash is on, PL/Proxy's way (presence_proxy.shard_of),
-- for a partition count and mapping read once per call.
CREATE FUNCTION presence_proxy.partition_of(hash integer, n integer,
                                            modular boolean)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN modular THEN abs(hash % n) ELSE hash & (n - 1) END $$;

CREATE FUNCTION presence_proxy.mapping(OUT n integer, OUT modular boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT count(*)::integer FROM presence_proxy.partitions()),
           coalesce((SELECT bool_or(o IN ('modular_mapping=1', 'modular_mapping=on',
                                          'modular_mapping=true'))
                       FROM pg_catalog.pg_foreign_server s, unnest(s.srvoptions) AS o
                      WHERE s.srvname = 'presence'), false)
$$;

-- A shard's error about element i of the part it was sent, raised again
-- about that element's index in the caller's array (positions, 1-based,
-- holds each part element's 0-based index there).
CREATE FUNCTION presence_proxy.raise_for_element(what text, positions bigint[],
                                                 state text, message text,
                                                 detail text)
RETURNS void
LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text[] := regexp_match(message, '^(.*)' || what || '\[(\d+)\]: (.*)$');
BEGIN
    IF m IS NOT NULL THEN
        message := m[1] || what || '[' || positions[m[2]::integer + 1] || ']: ' || m[3];
    END IF;
    IF coalesce(detail, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message;
    END IF;
    RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, DETAIL = detail;
END
$$;

CREATE FUNCTION presence_proxy.track_many_on(shard integer, entries jsonb,
                                             worker_id text)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_track_many(entries, worker_id);
$$;

CREATE FUNCTION presence_proxy.set_status_many_on(shard integer,
                                                  statuses jsonb,
                                                  worker_id text)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_set_status_many(statuses, worker_id);
$$;

CREATE FUNCTION presence_proxy.snapshot_many_on(shard integer, topics text[])
RETURNS SETOF json LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_snapshot_many(topics);
$$;

CREATE FUNCTION presence_proxy.snapshot_rows(topic text, OUT seq bigint,
                                             OUT epoch text, OUT entry json)
RETURNS SETOF record LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON presence_proxy.topic_hash(topic);
    TARGET presence_snapshot_rows;
$$;

CREATE FUNCTION presence_proxy.remove_idle_topics_on(shard integer,
                                                     older_than interval)
RETURNS integer LANGUAGE plproxy AS $$
    CLUSTER 'presence'; RUN ON shard;
    SELECT presence_remove_idle_topics(older_than);
$$;

-- A many-call through the proxy: each shard's part of elements (a JSON
-- array of objects with a topic) in one call of on_shard, a PL/Proxy
-- function (shard, elements, worker_id), in shard order; the sum of what
-- the shards return.  Not one transaction across shards (as no proxy call
-- is): an error on one shard leaves the parts the shards before it did.  A
-- bad element's error names its index in elements (what[i]), as on one
-- server.
CREATE FUNCTION presence_proxy.many_on_shards(what text, on_shard text,
                                              elements jsonb, worker_id text)
RETURNS integer LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    call text := pg_catalog.format('SELECT presence_proxy.%I($1, $2, $3)', on_shard);
    map record;
    part record;
    done integer;
    total integer := 0;
    state text;
    message text;
    detail text;
BEGIN
    IF elements IS NULL OR pg_catalog.jsonb_typeof(elements) <> 'array' THEN
        EXECUTE call INTO done USING 0, elements, worker_id;  -- presence's error
        RETURN done;
    END IF;
    SELECT * INTO map FROM presence_proxy.mapping();
    FOR part IN
        SELECT presence_proxy.partition_of(presence_proxy.topic_hash(
                   CASE WHEN pg_catalog.jsonb_typeof(e) = 'object' THEN e ->> 'topic' END),
                   map.n, map.modular) AS shard,
               pg_catalog.jsonb_agg(e ORDER BY i) AS elements,
               pg_catalog.array_agg(i - 1 ORDER BY i) AS positions
          FROM pg_catalog.jsonb_array_elements(elements) WITH ORDINALITY AS a(e, i)
         GROUP BY 1 ORDER BY 1
    LOOP
        BEGIN
            EXECUTE call INTO done USING part.shard, part.elements, worker_id;
            total := total + done;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
                message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            PERFORM presence_proxy.raise_for_element(what, part.positions,
                                                     state, message, detail);
        END;
    END LOOP;
    RETURN total;
END
$$;

CREATE FUNCTION presence_track_many(entries jsonb, worker_id text DEFAULT NULL)
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.many_on_shards('entries', 'track_many_on', entries,
                                           presence_proxy.worker(worker_id)) $$;

CREATE FUNCTION presence_set_status_many(statuses jsonb,
                                         worker_id text DEFAULT NULL)
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.many_on_shards('statuses', 'set_status_many_on',
                                           statuses,
                                           presence_proxy.worker(worker_id)) $$;

-- Each shard's topics in one call; the snapshots in the array's order.
CREATE FUNCTION presence_snapshot_many(topics text[])
RETURNS SETOF json LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    map record;
    part record;
    got json[];
    snapshots json[] := '{}';
    state text;
    message text;
    detail text;
BEGIN
    IF topics IS NULL OR array_ndims(topics) > 1 THEN
        RETURN QUERY SELECT * FROM presence_proxy.snapshot_many_on(0, topics);
        RETURN;
    END IF;
    SELECT * INTO map FROM presence_proxy.mapping();
    FOR part IN
        SELECT presence_proxy.partition_of(presence_proxy.topic_hash(t),
                                           map.n, map.modular) AS shard,
               array_agg(t ORDER BY i) AS topics,
               array_agg(i - 1 ORDER BY i) AS positions
          FROM unnest(topics) WITH ORDINALITY AS a(t, i)
         GROUP BY 1 ORDER BY 1
    LOOP
        BEGIN
            got := ARRAY(SELECT presence_proxy.snapshot_many_on(part.shard, part.topics));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
                message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            PERFORM presence_proxy.raise_for_element('topics', part.positions,
                                                     state, message, detail);
        END;
        FOR k IN 1 .. cardinality(got) LOOP
            snapshots[part.positions[k] + 1] := got[k];
        END LOOP;
    END LOOP;
    RETURN QUERY SELECT s FROM unnest(snapshots) WITH ORDINALITY AS a(s, i) ORDER BY i;
END
$$;

-- The rows come through PL/Proxy, which holds a shard's whole result: a
-- client reading a large topic with a cursor does so on the topic's shard
-- (presence_partition_map).
CREATE FUNCTION presence_snapshot_rows(topic text, OUT seq bigint,
                                       OUT epoch text, OUT entry json)
RETURNS SETOF record LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM presence_proxy.snapshot_rows(topic) $$;

CREATE FUNCTION presence_remove_idle_topics(older_than interval DEFAULT NULL)
RETURNS integer LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.sum_on_shards('presence_remove_idle_topics',
               'SELECT presence_proxy.remove_idle_topics_on($1, $2[1]::interval)',
               ARRAY[older_than::text]) $$;

-- presence_topic_hash(topic): the hash the partition map routes by,
-- PostgreSQL's hashtext(topic) (docs/scaling.md, "Routing in the client").
CREATE FUNCTION presence_topic_hash(topic text)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT presence_proxy.topic_hash(topic) $$;

-- presence_partition_map(): one row per shard, what a client needs to send
-- a topic's calls straight to its shard: the shard's index and connection
-- string, the partition count and mapping ('bitmask': hash & (n - 1);
-- 'modulo': abs(hash % n)) of presence_topic_hash(topic), and the map's
-- version (it changes whenever the foreign server's options do), which a
-- client compares to know its copy is current.
CREATE FUNCTION presence_partition_map(OUT shard integer, OUT connstr text,
                                       OUT partitions integer,
                                       OUT mapping text, OUT version text)
RETURNS SETOF record LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.shard, p.connstr, m.n,
           CASE WHEN m.modular THEN 'modulo' ELSE 'bitmask' END,
           (SELECT md5(s.srvoptions::text) FROM pg_catalog.pg_foreign_server s
             WHERE s.srvname = 'presence')
      FROM presence_proxy.partitions() p, presence_proxy.mapping() m
     ORDER BY p.shard
$$;

REVOKE ALL ON FUNCTION
    presence_proxy.partition_of(integer, integer, boolean),
    presence_proxy.mapping(),
    presence_proxy.raise_for_element(text, bigint[], text, text, text),
    presence_proxy.many_on_shards(text, text, jsonb, text),
    presence_proxy.track_many_on(integer, jsonb, text),
    presence_proxy.set_status_many_on(integer, jsonb, text),
    presence_proxy.snapshot_many_on(integer, text[]),
    presence_proxy.snapshot_rows(text),
    presence_proxy.remove_idle_topics_on(integer, interval),
    presence_track_many(jsonb, text),
    presence_set_status_many(jsonb, text),
    presence_snapshot_many(text[]),
    presence_snapshot_rows(text),
    presence_remove_idle_topics(interval),
    presence_topic_hash(text),
    presence_partition_map()
    FROM PUBLIC;

-- The app role, as in presence (GRANT presence_app TO app): the same
-- cluster-wide NOLOGIN role, made when missing, granted the API and
-- presence_shard(s), without the maintenance (sweep, prune,
-- history_maintain), which each shard's background worker runs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'presence_app') THEN
        CREATE ROLE presence_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;   -- another database's CREATE EXTENSION made it meanwhile
END
$$;

GRANT EXECUTE ON FUNCTION
    presence_track(text, integer, text, text, text, text, jsonb),
    presence_untrack(text, integer, text),
    presence_untrack_by_fd(integer, text),
    presence_clear(text),
    presence_list(text, text),
    presence_list_global(text),
    presence_count(text, text),
    presence_count_humans(text, text),
    presence_count_agents(text, text),
    presence_count_global(text),
    presence_count_humans_global(text),
    presence_count_agents_global(text),
    presence_set_status(text, integer, text, text, bigint, text),
    presence_set_status(text, integer, text, text, text, text),
    presence_set_status(text, integer, text, text, timestamptz, text),
    presence_set_status(text, integer, text, text, interval, text),
    presence_clear_status(text, integer, text),
    presence_set_meta(text, integer, jsonb, text),
    presence_find_entry(text, integer, text),
    presence_diff_topic(text),
    presence_snapshot(text),
    presence_channel(text),
    presence_epoch(),
    presence_worker_start(text, interval, boolean),
    presence_heartbeat(text),
    presence_worker_stop(text),
    presence_principals(text),
    presence_count_principals(text),
    presence_history(text, bigint, bigint),
    presence_last_seen(text, text),
    presence_shard(text),
    presence_shards(),
    presence_track_many(jsonb, text),
    presence_set_status_many(jsonb, text),
    presence_snapshot_many(text[]),
    presence_snapshot_rows(text),
    presence_topic_hash(text),
    presence_partition_map()
    TO presence_app;

-- The wrappers run as their caller, so the role also needs the internal
-- functions they call (not the maintenance ones), and the administrator
-- grants it USAGE on the foreign server (README, "More than one server").
GRANT USAGE ON SCHEMA presence_proxy TO presence_app;
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::pg_catalog.regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=)
               'presence_proxy'::pg_catalog.regnamespace
           AND p.proname OPERATOR(pg_catalog.<>) ALL (ARRAY[
               'prune_dead_workers_on', 'sweep_expired_status_on',
               'history_maintain_on', 'remove_idle_topics_on']::pg_catalog.name[])
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO presence_app', f);
    END LOOP;
END
$$;
