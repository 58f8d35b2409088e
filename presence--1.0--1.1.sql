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

-- Entry metadata -----------------------------------------------------------
--
-- meta: a JSON object per entry (display name, avatar, device, cursor...),
-- carried by every diff and snapshot entry after worker_id.  The default
-- keeps Tep's own INSERTs, which name their columns, working, and gives
-- the entries of an updated installation '{}' (no table rewrite).
ALTER TABLE tep_presence ADD COLUMN meta jsonb NOT NULL DEFAULT '{}';

-- The row's rules now cover meta: an object of at most 2048 bytes as jsonb
-- writes it, and the diffs' size with it.
CREATE FUNCTION presence_entry_is_valid(worker_id text, topic text,
                                        fd integer, principal_id text,
                                        kind text, agent_id text,
                                        since_ts bigint, status_state text,
                                        status_note text, status_until bigint,
                                        meta jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_entry_is_valid'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

GRANT EXECUTE ON FUNCTION
    presence_entry_is_valid(text, text, integer, text, text, text, bigint,
                            text, text, bigint, jsonb)
    TO PUBLIC;

-- 1.1's check also holds every writer to the byte limits (topic,
-- worker_id, principal_id, agent_id 255, note 1024).  A 1.0 table may hold
-- rows over them, written directly: the update keeps those (the constraint
-- stays NOT VALID, with a WARNING) rather than fail; the sweep leaves their
-- statuses and the background worker names each once.
ALTER TABLE tep_presence
    DROP CONSTRAINT tep_presence_entry_check,
    ADD CONSTRAINT tep_presence_entry_check
        CHECK (presence_entry_is_valid(worker_id, topic, fd, principal_id,
                                       kind, agent_id, since_ts,
                                       status_state, status_note,
                                       status_until, meta)) NOT VALID;
DO $$
BEGIN
    ALTER TABLE tep_presence VALIDATE CONSTRAINT tep_presence_entry_check;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'tep_presence has rows over the byte limits: tep_presence_entry_check is left NOT VALID'
          USING HINT = 'Delete them, then ALTER TABLE tep_presence VALIDATE CONSTRAINT tep_presence_entry_check.';
END
$$;

DROP FUNCTION presence_entry_is_valid(text, text, integer, text, text, text,
                                      bigint, text, text, bigint);

-- presence_track gains meta, last, so that 1.0's positional calls keep
-- their meaning.  The 1.0 signature goes (a call would be ambiguous
-- between the two); the roles granted it are granted the new one.
CREATE FUNCTION presence_track(topic text, fd integer, principal_id text,
                               kind text DEFAULT 'human',
                               agent_id text DEFAULT '',
                               worker_id text DEFAULT NULL,
                               meta jsonb DEFAULT '{}')
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_track'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION presence_track(text, integer, text, text, text, text,
                                      jsonb) FROM PUBLIC;

DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN
        SELECT a.grantee::regrole
          FROM pg_catalog.pg_proc p,
               pg_catalog.aclexplode(p.proacl) a
         WHERE p.oid OPERATOR(pg_catalog.=)
               'presence_track(text, integer, text, text, text, text)'::pg_catalog.regprocedure
           AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
           AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
           AND a.grantee OPERATOR(pg_catalog.<>) 0
    LOOP
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION presence_track(text, integer, text, text, text, text, jsonb) TO %s',
            grantee);
    END LOOP;
END
$$;

DROP FUNCTION presence_track(text, integer, text, text, text, text);

CREATE FUNCTION presence_set_meta(topic text, fd integer, meta jsonb,
                                  worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_set_meta'
LANGUAGE C VOLATILE;

-- Session history ----------------------------------------------------------
--
-- One row per ended session, written (when presence.history is on) by the
-- statement that ends it.  Partitioned by the day it ended (UTC), so that
-- retention drops whole days: presence_history_YYYYMMDD partitions, made
-- ahead and dropped by presence_history_maintain() (the background worker
-- runs it each minute).  The default partition holds what arrives before
-- its day's partition exists.  Read through presence_history() and
-- presence_last_seen() only.
CREATE TABLE presence_history (
    topic        text    NOT NULL,
    worker_id    text    NOT NULL,
    fd           integer NOT NULL,
    principal_id text    NOT NULL,
    kind         text    NOT NULL,
    agent_id     text    NOT NULL,
    meta         jsonb   NOT NULL,
    joined_ts    bigint  NOT NULL,
    left_ts      bigint  NOT NULL,
    reason       text    NOT NULL
) PARTITION BY RANGE (left_ts);

CREATE TABLE presence_history_default PARTITION OF presence_history DEFAULT;

-- presence_history(topic, ...) and presence_last_seen(principal_id, ...).
CREATE INDEX presence_history_topic_idx
    ON presence_history (topic, left_ts);
CREATE INDEX presence_history_principal_idx
    ON presence_history (principal_id, left_ts);

-- presence_last_seen(principal_id) without a topic.
CREATE INDEX tep_presence_principal_idx ON tep_presence (principal_id);

REVOKE ALL ON presence_history, presence_history_default FROM PUBLIC;

CREATE FUNCTION presence_history(topic text, from_ts bigint, to_ts bigint)
RETURNS SETOF presence_history
AS 'MODULE_PATHNAME', 'presence_history'
LANGUAGE C STABLE;

CREATE FUNCTION presence_last_seen(principal_id text, topic text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_last_seen'
LANGUAGE C STABLE;

CREATE FUNCTION presence_history_maintain()
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_history_maintain'
LANGUAGE C VOLATILE;

-- One row per principal ------------------------------------------------------
--
-- humans: its human connections; agents: the distinct agents acting for
-- it; connections: all its entries; state: busy beats available beats
-- blocked, over its human connections (over its agents' when none);
-- since: its oldest entry's; meta: its newest human entry's (else its
-- newest agent entry's).
CREATE FUNCTION presence_principals(topic text,
                                    OUT principal_id text,
                                    OUT humans bigint,
                                    OUT agents bigint,
                                    OUT connections bigint,
                                    OUT state text,
                                    OUT since bigint,
                                    OUT meta jsonb)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'presence_principals'
LANGUAGE C STABLE;

CREATE FUNCTION presence_count_principals(topic text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'presence_count_principals'
LANGUAGE C STABLE;

REVOKE ALL ON FUNCTION
    presence_set_meta(text, integer, jsonb, text),
    presence_history(text, bigint, bigint),
    presence_last_seen(text, text),
    presence_history_maintain(),
    presence_principals(text),
    presence_count_principals(text)
    FROM PUBLIC;

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

-- Every commit updates its topics' seq rows in place.  Packed pages (1.0's
-- fillfactor 100) leave no room for the new version, so nearly every
-- commit pruned a whole page of versions first; with four fifths of each
-- page kept free, the updates stay HOT and a page is pruned once in many
-- commits.  About 40 topics a page: 1M topics take some 200 MB.  Rows
-- written before the update keep their pages until VACUUM FULL.
ALTER TABLE presence_topic_seq SET (fillfactor = 20);

-- Workers that refuse mistakes ---------------------------------------------
--
-- presence_worker_start gains takeover, last (1.0's positional calls keep
-- their meaning): a live worker bound to another connection is refused
-- (55006, naming that connection's pid) unless takeover => true, so that
-- two processes given one id cannot take it from each other silently.
-- The roles granted the 1.0 function are granted the new one.
CREATE FUNCTION presence_worker_start(worker_id text DEFAULT NULL,
                                      lease interval DEFAULT NULL,
                                      takeover boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'presence_worker_start'
LANGUAGE C VOLATILE SECURITY DEFINER;

-- presence_set_status also takes the expiry as a timestamptz, or as an
-- interval from now.  note and until_ts have no default here, so that a
-- call without until_ts, or with an integer, still resolves to the bigint
-- form.  The text form is for untyped parameters (node-postgres sends
-- them): among the other three an unknown until_ts would be ambiguous, so
-- PostgreSQL takes the one with a text argument, which reads it as 1.0
-- did, as a bigint.
CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text, until_ts text,
                                    worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_set_status_text'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text, until_ts timestamptz,
                                    worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_set_status_at'
LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION presence_set_status(topic text, fd integer, state text,
                                    note text, until_ts interval,
                                    worker_id text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'presence_set_status_for'
LANGUAGE C VOLATILE SECURITY DEFINER;

REVOKE ALL ON FUNCTION
    presence_worker_start(text, interval, boolean),
    presence_set_status(text, integer, text, text, text, text),
    presence_set_status(text, integer, text, text, timestamptz, text),
    presence_set_status(text, integer, text, text, interval, text)
    FROM PUBLIC;

-- The roles granted 1.0's worker_start or set_status get the new forms.
DO $$
DECLARE
    pair text[];
    grantee regrole;
BEGIN
    FOREACH pair SLICE 1 IN ARRAY ARRAY[
        ['presence_worker_start(text, interval)',
         'presence_worker_start(text, interval, boolean)'],
        ['presence_set_status(text, integer, text, text, bigint, text)',
         'presence_set_status(text, integer, text, text, text, text)'],
        ['presence_set_status(text, integer, text, text, bigint, text)',
         'presence_set_status(text, integer, text, text, timestamptz, text)'],
        ['presence_set_status(text, integer, text, text, bigint, text)',
         'presence_set_status(text, integer, text, text, interval, text)']]
    LOOP
        FOR grantee IN
            SELECT a.grantee::regrole
              FROM pg_catalog.pg_proc p,
                   pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid OPERATOR(pg_catalog.=) pair[1]::pg_catalog.regprocedure
               AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
               AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
               AND a.grantee OPERATOR(pg_catalog.<>) 0
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s',
                                      pair[2], grantee);
        END LOOP;
    END LOOP;
END
$$;

DROP FUNCTION presence_worker_start(text, interval);

-- Named connection-bound workers whose connection ended: the prune moves
-- them here from tep_presence_worker (with the pid they were bound to), so
-- that a later track, status change or heartbeat of the id from another
-- connection is refused (55000) instead of registering it again as a
-- heartbeat worker tied to nothing.  presence_worker_start and
-- presence_worker_stop of the id forget it; the prune forgets it after a
-- day.  Live connection state, like the other tables: not dumped.
CREATE TABLE presence_ended_worker (
    worker_id   text    PRIMARY KEY,
    backend_pid integer NOT NULL,
    ended_ts    bigint  NOT NULL
);

CREATE INDEX presence_ended_worker_ended_idx
    ON presence_ended_worker (ended_ts);

REVOKE ALL ON presence_ended_worker FROM PUBLIC;

-- Many entries or topics in one call ----------------------------------------
--
-- A gateway that restarts registers its sockets, and one whose LISTEN
-- connection dropped resyncs its topics, in one round trip (and, for
-- writes, one commit) instead of one per entry or topic.

-- presence_track for each element of entries, a JSON array of objects
-- {topic, fd, principal_id, kind, agent_id, meta} (kind 'human', agent_id
-- '' and meta {} when left out), all for worker_id; one join diff per new
-- entry.  Returns how many were newly tracked.  Bad input in any element:
-- an ERROR whose message begins "entries[i]: " (i from 0), nothing changed.
CREATE FUNCTION presence_track_many(entries jsonb, worker_id text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_track_many'
LANGUAGE C VOLATILE;

-- presence_set_status for each element of statuses, a JSON array of objects
-- {topic, fd, state, note, until_ts} (note '' and until_ts 0 when left
-- out), all for worker_id; one status diff per entry found.  Returns how
-- many entries were found.  Bad input in any element: an ERROR whose
-- message begins "statuses[i]: ", nothing changed.
CREATE FUNCTION presence_set_status_many(statuses jsonb,
                                         worker_id text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_set_status_many'
LANGUAGE C VOLATILE;

-- presence_snapshot of each topic, in the array's order, all read in one
-- snapshot (each exact for its own topic, as presence_snapshot is).
CREATE FUNCTION presence_snapshot_many(topics text[])
RETURNS SETOF json
AS 'MODULE_PATHNAME', 'presence_snapshot_many'
LANGUAGE C STABLE;

-- A large topic's snapshot as rows, for a client that reads it with a
-- cursor instead of as one value: first (seq, epoch, NULL), then one row
-- per entry (presence_snapshot's objects, in its order), all read in one
-- snapshot and every row carrying the seq the whole belongs to.
CREATE FUNCTION presence_snapshot_rows(topic text,
                                       OUT seq bigint,
                                       OUT epoch text,
                                       OUT entry json)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'presence_snapshot_rows'
LANGUAGE C STABLE;

REVOKE ALL ON FUNCTION
    presence_track_many(jsonb, text),
    presence_set_status_many(jsonb, text),
    presence_snapshot_many(text[]),
    presence_snapshot_rows(text)
    FROM PUBLIC;

-- Retention of idle topics ----------------------------------------------------
--
-- changed_ts: when the topic's diffs were last committed (epoch seconds;
-- 0 for rows written before 1.1).  A topic without entries whose
-- changed_ts is older than presence.topic_retention (default 1 day) loses
-- its row: the background worker walks the table, or
-- presence_remove_idle_topics() does it at once.  The row of the empty
-- topic '' (a name no call accepts) is the floor: each removal raises its
-- seq to the removed ones', and a topic without a row, new or back, goes
-- on from it (its snapshot says so), so a client that kept an old seq
-- sees a gap, never a repeat.
ALTER TABLE presence_topic_seq ADD COLUMN changed_ts bigint NOT NULL DEFAULT 0;

CREATE FUNCTION presence_remove_idle_topics(older_than interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_remove_idle_topics'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION presence_remove_idle_topics(interval) FROM PUBLIC;

-- The app role ---------------------------------------------------------------
--
-- presence_app: everything a gateway needs, in one grant (GRANT presence_app
-- TO app), as pg_monitor is for monitoring.  It is NOLOGIN, made here when
-- the cluster has none yet: roles are cluster-wide, so every database with
-- the extension grants its functions to the same role, and DROP EXTENSION
-- leaves it (its grants in that database go with the functions).  Outside
-- it, for the owner and whoever the owner grants them to: the maintenance
-- that acts on every worker's entries whoever owns them, or on the history
-- table as a whole (presence_sweep_expired_status,
-- presence_prune_dead_workers, presence_history_maintain,
-- presence_remove_idle_topics); the background worker runs them.
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
    presence_track_many(jsonb, text),
    presence_set_status_many(jsonb, text),
    presence_snapshot_many(text[]),
    presence_snapshot_rows(text)
    TO presence_app;

-- The functions run as their caller (SECURITY INVOKER), and their C code
-- runs its work as the tables' owner (src/args.c, presence_call_as_owner):
-- the role a call acts for is then the one PostgreSQL checked EXECUTE for,
-- GetUserId(), never a role further out (under SECURITY DEFINER the caller
-- could only be taken from the session, which inside ANALYZE or another
-- role's SECURITY DEFINER function is not the role running the code), and
-- a change inside a security-restricted operation is refused.
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_depend d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE e.extname OPERATOR(pg_catalog.=) 'presence' AND p.prosecdef
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY INVOKER', f);
    END LOOP;
END
$$;
