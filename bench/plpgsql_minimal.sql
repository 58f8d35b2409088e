-- What a user writes first (schema "minimal"): three PL/pgSQL functions,
-- each one DML ... RETURNING * and one pg_notify of the row as
-- json_build_object in Tep's wire format.  No validation, no seq, no
-- locks, no CHECK: the table is a copy of tep_presence's columns, defaults
-- and indexes only.  The benchmark's "minimal" side.

DROP SCHEMA IF EXISTS minimal CASCADE;
CREATE SCHEMA minimal;
CREATE TABLE minimal.tep_presence
    (LIKE public.tep_presence INCLUDING DEFAULTS INCLUDING INDEXES);

CREATE FUNCTION minimal.notify(kind text, p minimal.tep_presence)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tep_broadcast',
        length('presence:' || p.topic) || ':presence:' || p.topic ||
        json_build_object('kind', kind, 'topic', p.topic,
            'principal', p.principal_id, 'ekind', p.kind,
            'agent_id', p.agent_id, 'fd', p.fd, 'since', p.since_ts,
            'state', p.status_state, 'note', p.status_note,
            'until_ts', p.status_until, 'worker_id', p.worker_id)::text);
END
$$;

CREATE FUNCTION minimal.presence_track(topic text, fd integer,
                                       principal_id text,
                                       kind text DEFAULT 'human',
                                       agent_id text DEFAULT '',
                                       worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    p minimal.tep_presence;
BEGIN
    INSERT INTO minimal.tep_presence AS t
        (worker_id, topic, fd, principal_id, kind, agent_id, since_ts)
    VALUES (presence_track.worker_id, presence_track.topic, presence_track.fd,
            presence_track.principal_id, presence_track.kind,
            presence_track.agent_id, extract(epoch FROM now())::bigint)
    RETURNING * INTO p;
    PERFORM minimal.notify('join', p);
    RETURN true;
END
$$;

CREATE FUNCTION minimal.presence_set_status(topic text, fd integer,
                                            state text, note text DEFAULT '',
                                            until_ts bigint DEFAULT 0,
                                            worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    p minimal.tep_presence;
BEGIN
    UPDATE minimal.tep_presence AS t
       SET status_state = state, status_note = note, status_until = until_ts
     WHERE t.topic = presence_set_status.topic AND t.worker_id = presence_set_status.worker_id
       AND t.fd = presence_set_status.fd
    RETURNING * INTO p;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM minimal.notify('status', p);
    RETURN true;
END
$$;

CREATE FUNCTION minimal.presence_untrack(topic text, fd integer,
                                         worker_id text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    p minimal.tep_presence;
BEGIN
    DELETE FROM minimal.tep_presence AS t
     WHERE t.topic = presence_untrack.topic AND t.worker_id = presence_untrack.worker_id
       AND t.fd = presence_untrack.fd
    RETURNING * INTO p;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM minimal.notify('leave', p);
    RETURN true;
END
$$;
