-- presence 1.0: tables, indexes and the SQL surface (declarations only;
-- every function is implemented in C).

\echo Use "CREATE EXTENSION presence" to load this file. \quit

-- The rules of a row, in C: kind is 'human' (agent_id '') or 'agent_for'
-- (agent_id not ''), status_state is 'available', 'busy' or 'blocked', and
-- every diff the row can ever produce fits in a NOTIFY payload (else ERROR
-- 22023): a row whose leave could not be sent could never be pruned.
-- PostgreSQL prepares every CHECK expression again for each INSERT or
-- UPDATE statement, and one function call is far cheaper to prepare than
-- the equivalent IN lists.
CREATE FUNCTION presence_entry_is_valid(worker_id text, topic text,
                                        fd integer, principal_id text,
                                        kind text, agent_id text,
                                        since_ts bigint, status_state text,
                                        status_note text, status_until bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_entry_is_valid'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- One row per (topic, worker, fd): Tep's mirror table, column for column.
CREATE TABLE tep_presence (
    worker_id    text    NOT NULL,
    topic        text    NOT NULL,
    fd           integer NOT NULL,
    principal_id text    NOT NULL,
    kind         text    NOT NULL DEFAULT 'human',
    agent_id     text    NOT NULL DEFAULT '',
    since_ts     bigint  NOT NULL,
    status_state text    NOT NULL DEFAULT 'available',
    status_note  text    NOT NULL DEFAULT '',
    status_until bigint  NOT NULL DEFAULT 0,
    -- topic first: the key then serves per-topic reads too.  Tep's
    -- ON CONFLICT (worker_id, topic, fd) infers it (column order is free).
    CONSTRAINT tep_presence_pkey PRIMARY KEY (topic, worker_id, fd),
    CONSTRAINT tep_presence_entry_check
        CHECK (presence_entry_is_valid(worker_id, topic, fd, principal_id,
                                       kind, agent_id, since_ts,
                                       status_state, status_note,
                                       status_until))
);

-- untrack_by_fd, clear, worker_stop and prune work per worker (and fd).
CREATE INDEX tep_presence_worker_fd_idx ON tep_presence (worker_id, fd);

-- The sweep reads only the statuses that can expire.
CREATE INDEX tep_presence_expiring_idx ON tep_presence (status_until)
    WHERE status_until > 0;

-- Tep's heartbeat table, plus what liveness needs.  A row is one of:
-- connection-bound (backend_pid and backend_start set), leased (lease and
-- lease_until set), or a Tep-written heartbeat row (neither).
CREATE TABLE tep_presence_worker (
    worker_id     text        PRIMARY KEY,
    last_seen_ts  bigint      NOT NULL,
    backend_pid   integer,
    backend_start timestamptz,
    lease         interval,
    lease_until   timestamptz,
    CONSTRAINT tep_presence_worker_backend_check
        CHECK ((backend_pid IS NULL) = (backend_start IS NULL)),
    CONSTRAINT tep_presence_worker_lease_check
        CHECK ((lease IS NULL) = (lease_until IS NULL)
               AND (lease IS NULL OR lease > interval '0')),
    CONSTRAINT tep_presence_worker_kind_check
        CHECK (backend_pid IS NULL OR lease IS NULL)
);

CREATE INDEX tep_presence_worker_lease_idx
    ON tep_presence_worker (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX tep_presence_worker_ttl_idx
    ON tep_presence_worker (last_seen_ts)
    WHERE backend_pid IS NULL AND lease IS NULL;
-- Connection-bound workers, by the age of the heartbeat they are given.
CREATE INDEX tep_presence_worker_backend_idx
    ON tep_presence_worker (last_seen_ts) WHERE backend_pid IS NOT NULL;

-- The last diff's seq per topic.  Rows are kept when a topic empties so
-- that seq never goes back for a listener holding an older snapshot.
CREATE TABLE presence_topic_seq (
    topic text   PRIMARY KEY,
    seq   bigint NOT NULL
);

REVOKE ALL ON tep_presence, tep_presence_worker, presence_topic_seq
    FROM PUBLIC;

-- Entries -----------------------------------------------------------------
--
-- Every function runs as the extension's owner (SECURITY DEFINER), so an app
-- role needs EXECUTE and no table privileges.  No SET search_path clause: it
-- costs about 4 us per call; instead every name in the functions' queries is
-- schema-qualified (tables, functions, operators), so nothing a caller
-- creates can capture them.

CREATE FUNCTION presence_track(topic text, fd integer, principal_id text,
                               kind text DEFAULT 'human',
                               agent_id text DEFAULT '',
                               worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_track'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_untrack(topic text, fd integer,
                                 worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_untrack'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_untrack_by_fd(fd integer,
                                       worker_id text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_untrack_by_fd'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_list(topic text, worker_id text DEFAULT NULL)
RETURNS SETOF tep_presence
AS 'MODULE_PATHNAME', 'presence_list'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_list_global(topic text)
RETURNS SETOF tep_presence
AS 'MODULE_PATHNAME', 'presence_list_global'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_count(topic text, worker_id text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_count_humans(topic text, worker_id text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count_humans'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_count_agents(topic text, worker_id text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count_agents'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_count_global(topic text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count_global'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_count_humans_global(topic text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count_humans_global'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_count_agents_global(topic text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count_agents_global'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text DEFAULT '',
                                    until_ts bigint DEFAULT 0,
                                    worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_set_status'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_clear_status(topic text, fd integer,
                                      worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_clear_status'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_find_entry(topic text, fd integer,
                                    worker_id text DEFAULT NULL)
RETURNS tep_presence
AS 'MODULE_PATHNAME', 'presence_find_entry'
LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION presence_sweep_expired_status()
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_sweep_expired_status'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_clear(worker_id text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_clear'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_diff_topic(topic text)
RETURNS text
AS 'MODULE_PATHNAME', 'presence_diff_topic'
LANGUAGE C IMMUTABLE SECURITY DEFINER;

CREATE FUNCTION presence_snapshot(topic text)
RETURNS json
AS 'MODULE_PATHNAME', 'presence_snapshot'
LANGUAGE C STABLE SECURITY DEFINER;

-- Workers -----------------------------------------------------------------

CREATE FUNCTION presence_worker_start(worker_id text DEFAULT NULL,
                                      lease interval DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'presence_worker_start'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_heartbeat(worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_heartbeat'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_worker_stop(worker_id text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_worker_stop'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_prune_dead_workers()
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_prune_dead_workers'
LANGUAGE C VOLATILE SECURITY DEFINER;

-- Nothing is executable by PUBLIC: an app role is granted EXECUTE.
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
         WHERE e.extname = 'presence'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

-- The one exception: the CHECK of tep_presence calls this function with the
-- privileges of whoever writes the row, so a Tep app granted the tables
-- must be able to run it.  It reads nothing and only compares its strings.
GRANT EXECUTE ON FUNCTION
    presence_entry_is_valid(text, text, integer, text, text, text, bigint,
                            text, text, bigint)
    TO PUBLIC;
