-- The bare floor: a copy of tep_presence (same columns, constraints and
-- indexes) in schema "floor", written to by plain INSERT / UPDATE / DELETE
-- with no function, no seq table and no NOTIFY.  What the three
-- operations cost when they only change the table.

DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;

CREATE TABLE floor.tep_presence (
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
    CONSTRAINT tep_presence_pkey PRIMARY KEY (topic, worker_id, fd),
    CONSTRAINT tep_presence_kind_check
        CHECK (kind IN ('human', 'agent_for')),
    CONSTRAINT tep_presence_agent_id_check
        CHECK ((kind = 'human') = (agent_id = '')),
    CONSTRAINT tep_presence_state_check
        CHECK (status_state IN ('available', 'busy', 'blocked'))
);
CREATE INDEX ON floor.tep_presence (worker_id, fd);
CREATE INDEX ON floor.tep_presence (status_until) WHERE status_until > 0;

-- Only for the diagnostic sides (write_floor_notify, write_sql): the
-- per-topic seq, so one SQL statement per operation can do everything the
-- extension does.
CREATE TABLE floor.presence_topic_seq (
    topic text   PRIMARY KEY,
    seq   bigint NOT NULL
);
