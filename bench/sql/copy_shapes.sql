-- Re-makes the reference's and the floor's tables as exact copies of the
-- extension's (LIKE ... INCLUDING ALL: columns, defaults, constraints,
-- indexes), so the comparison stays like for like whatever the
-- extension's DDL becomes.  Run before any reference function is called.
\set ON_ERROR_STOP 1
DROP TABLE IF EXISTS ref.tep_presence, ref.tep_presence_worker,
    ref.presence_topic_seq, floor.tep_presence, floor.presence_topic_seq;
CREATE TABLE ref.tep_presence (LIKE public.tep_presence INCLUDING ALL);
CREATE TABLE ref.tep_presence_worker (LIKE public.tep_presence_worker INCLUDING ALL);
CREATE TABLE ref.presence_topic_seq (LIKE public.presence_topic_seq INCLUDING ALL);
CREATE TABLE floor.tep_presence (LIKE public.tep_presence INCLUDING ALL);
CREATE TABLE floor.presence_topic_seq (LIKE public.presence_topic_seq INCLUDING ALL);

-- The sides without the CHECK: columns, defaults and indexes only.
DROP SCHEMA IF EXISTS floor_nc CASCADE;
CREATE SCHEMA floor_nc;
CREATE TABLE floor_nc.tep_presence
    (LIKE public.tep_presence INCLUDING DEFAULTS INCLUDING INDEXES);
