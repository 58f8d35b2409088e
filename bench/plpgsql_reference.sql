-- The hand-written alternative the extension is measured against.
--
-- A fair, idiomatic PL/pgSQL implementation of presence_track,
-- presence_set_status and presence_untrack, in its own schema "ref", on
-- copies of the extension's tables (same columns, constraints and
-- indexes as presence--1.0.sql; bench/run.sh re-makes them from the
-- installed extension's tables with LIKE ... INCLUDING ALL, see
-- bench/sql/copy_shapes.sql).  Each function does what the extension's does for an explicit
-- worker id:
--
--   * rejects bad input with 22004 / 22023, naming the argument;
--   * track registers an unknown worker id as a heartbeat worker;
--   * changes the entry with one DML statement ... RETURNING;
--   * advances the topic's seq with INSERT ... ON CONFLICT DO UPDATE
--     RETURNING (the row lock it takes is held to commit, so writers of a
--     topic commit in seq order);
--   * builds the diff with json_build_object in Tep's key order plus seq
--     and worker_id, and sends "<N>:presence:<topic><json>" with pg_notify
--     on channel tep_broadcast.
--
-- The functions are declared like the extension's (VOLATILE SECURITY
-- DEFINER SET search_path = pg_catalog, pg_temp) so both pay the same
-- call overhead; the only difference left is PL/pgSQL versus C.
--
-- json_build_object separates keys and values with " : " and ", " where
-- the extension writes compact JSON; both parse the same, and the
-- reference's payloads are about 40 bytes longer.
--
-- Needs nothing but PostgreSQL; it is independent of the extension.

DROP SCHEMA IF EXISTS ref CASCADE;
CREATE SCHEMA ref;

-- The same tables as the extension's, copied from them (the extension is
-- created first), so that no hand-written copy can drift; run.sh makes them
-- again with bench/sql/copy_shapes.sql and checks that the shapes match.
CREATE TABLE ref.tep_presence (LIKE public.tep_presence INCLUDING ALL);
CREATE TABLE ref.tep_presence_worker (LIKE public.tep_presence_worker INCLUDING ALL);
CREATE TABLE ref.presence_topic_seq (LIKE public.presence_topic_seq INCLUDING ALL);

-- presence_track: true = new entry (join diff), false = already there.
CREATE FUNCTION ref.presence_track(topic text, fd integer,
                                   principal_id text,
                                   kind text DEFAULT 'human',
                                   agent_id text DEFAULT '',
                                   worker_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    wid text := coalesce(presence_track.worker_id,
                         nullif(current_setting('presence.worker_id', true), ''));
    e   ref.tep_presence;
    s   bigint;
BEGIN
    IF presence_track.topic IS NULL OR presence_track.fd IS NULL
       OR presence_track.principal_id IS NULL OR presence_track.kind IS NULL
       OR presence_track.agent_id IS NULL OR wid IS NULL THEN
        RAISE EXCEPTION 'presence_track: topic, fd, principal_id, kind, agent_id and worker_id must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF presence_track.topic = '' OR octet_length(presence_track.topic) > 255 THEN
        RAISE EXCEPTION 'presence_track: bad topic' USING ERRCODE = '22023';
    END IF;
    IF presence_track.principal_id = ''
       OR octet_length(presence_track.principal_id) > 255 THEN
        RAISE EXCEPTION 'presence_track: bad principal_id' USING ERRCODE = '22023';
    END IF;
    IF octet_length(presence_track.agent_id) > 255
       OR presence_track.kind NOT IN ('human', 'agent_for')
       OR (presence_track.kind = 'human') <> (presence_track.agent_id = '') THEN
        RAISE EXCEPTION 'presence_track: bad kind or agent_id' USING ERRCODE = '22023';
    END IF;
    IF presence_track.fd < 0 THEN
        RAISE EXCEPTION 'presence_track: bad fd' USING ERRCODE = '22023';
    END IF;

    -- An explicit worker id is registered on first use.
    IF NOT EXISTS (SELECT 1 FROM ref.tep_presence_worker w
                    WHERE w.worker_id = wid) THEN
        INSERT INTO ref.tep_presence_worker (worker_id, last_seen_ts)
        VALUES (wid, floor(extract(epoch FROM transaction_timestamp()))::bigint)
        ON CONFLICT DO NOTHING;
    END IF;

    INSERT INTO ref.tep_presence AS p
           (worker_id, topic, fd, principal_id, kind, agent_id, since_ts)
    VALUES (wid, presence_track.topic, presence_track.fd,
            presence_track.principal_id, presence_track.kind,
            presence_track.agent_id,
            floor(extract(epoch FROM transaction_timestamp()))::bigint)
    ON CONFLICT (topic, worker_id, fd) DO NOTHING
    RETURNING p.* INTO e;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    INSERT INTO ref.presence_topic_seq AS q (topic, seq)
    VALUES (e.topic, 1)
    ON CONFLICT (topic) DO UPDATE SET seq = q.seq + 1
    RETURNING q.seq INTO s;

    PERFORM pg_notify('tep_broadcast',
        (9 + char_length(e.topic))::text || ':presence:' || e.topic ||
        json_build_object('kind', 'join', 'topic', e.topic,
                          'principal', e.principal_id, 'ekind', e.kind,
                          'agent_id', e.agent_id, 'fd', e.fd,
                          'since', e.since_ts, 'state', e.status_state,
                          'note', e.status_note, 'until_ts', e.status_until,
                          'seq', s, 'worker_id', e.worker_id)::text);
    RETURN true;
END
$$;

-- presence_set_status: false = no such entry; else one status diff.
CREATE FUNCTION ref.presence_set_status(topic text, fd integer, state text,
                                        note text DEFAULT '',
                                        until_ts bigint DEFAULT 0,
                                        worker_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    wid text := coalesce(presence_set_status.worker_id,
                         nullif(current_setting('presence.worker_id', true), ''));
    e   ref.tep_presence;
    s   bigint;
BEGIN
    IF presence_set_status.topic IS NULL OR presence_set_status.fd IS NULL
       OR presence_set_status.state IS NULL OR presence_set_status.note IS NULL
       OR presence_set_status.until_ts IS NULL OR wid IS NULL THEN
        RAISE EXCEPTION 'presence_set_status: topic, fd, state, note, until_ts and worker_id must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF presence_set_status.topic = ''
       OR octet_length(presence_set_status.topic) > 255 THEN
        RAISE EXCEPTION 'presence_set_status: bad topic' USING ERRCODE = '22023';
    END IF;
    IF presence_set_status.state NOT IN ('available', 'busy', 'blocked') THEN
        RAISE EXCEPTION 'presence_set_status: bad state' USING ERRCODE = '22023';
    END IF;
    IF octet_length(presence_set_status.note) > 1024 THEN
        RAISE EXCEPTION 'presence_set_status: note too long' USING ERRCODE = '22023';
    END IF;
    IF presence_set_status.fd < 0 OR presence_set_status.until_ts < 0 THEN
        RAISE EXCEPTION 'presence_set_status: bad fd or until_ts' USING ERRCODE = '22023';
    END IF;

    UPDATE ref.tep_presence AS p
       SET status_state = presence_set_status.state,
           status_note = presence_set_status.note,
           status_until = presence_set_status.until_ts
     WHERE p.topic = presence_set_status.topic
       AND p.worker_id = wid
       AND p.fd = presence_set_status.fd
    RETURNING p.* INTO e;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    INSERT INTO ref.presence_topic_seq AS q (topic, seq)
    VALUES (e.topic, 1)
    ON CONFLICT (topic) DO UPDATE SET seq = q.seq + 1
    RETURNING q.seq INTO s;

    PERFORM pg_notify('tep_broadcast',
        (9 + char_length(e.topic))::text || ':presence:' || e.topic ||
        json_build_object('kind', 'status', 'topic', e.topic,
                          'principal', e.principal_id, 'ekind', e.kind,
                          'agent_id', e.agent_id, 'fd', e.fd,
                          'since', e.since_ts, 'state', e.status_state,
                          'note', e.status_note, 'until_ts', e.status_until,
                          'seq', s, 'worker_id', e.worker_id)::text);
    RETURN true;
END
$$;

-- presence_untrack: false = no such entry; else one leave diff.
CREATE FUNCTION ref.presence_untrack(topic text, fd integer,
                                     worker_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    wid text := coalesce(presence_untrack.worker_id,
                         nullif(current_setting('presence.worker_id', true), ''));
    e   ref.tep_presence;
    s   bigint;
BEGIN
    IF presence_untrack.topic IS NULL OR presence_untrack.fd IS NULL
       OR wid IS NULL THEN
        RAISE EXCEPTION 'presence_untrack: topic, fd and worker_id must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF presence_untrack.topic = ''
       OR octet_length(presence_untrack.topic) > 255 THEN
        RAISE EXCEPTION 'presence_untrack: bad topic' USING ERRCODE = '22023';
    END IF;
    IF presence_untrack.fd < 0 THEN
        RAISE EXCEPTION 'presence_untrack: bad fd' USING ERRCODE = '22023';
    END IF;

    DELETE FROM ref.tep_presence AS p
     WHERE p.topic = presence_untrack.topic
       AND p.worker_id = wid
       AND p.fd = presence_untrack.fd
    RETURNING p.* INTO e;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    INSERT INTO ref.presence_topic_seq AS q (topic, seq)
    VALUES (e.topic, 1)
    ON CONFLICT (topic) DO UPDATE SET seq = q.seq + 1
    RETURNING q.seq INTO s;

    PERFORM pg_notify('tep_broadcast',
        (9 + char_length(e.topic))::text || ':presence:' || e.topic ||
        json_build_object('kind', 'leave', 'topic', e.topic,
                          'principal', e.principal_id, 'ekind', e.kind,
                          'agent_id', e.agent_id, 'fd', e.fd,
                          'since', e.since_ts, 'state', e.status_state,
                          'note', e.status_note, 'until_ts', e.status_until,
                          'seq', s, 'worker_id', e.worker_id)::text);
    RETURN true;
END
$$;
