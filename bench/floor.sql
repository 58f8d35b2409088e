-- The bare floor: a copy of tep_presence (same columns, constraints and
-- indexes) in schema "floor", written to by plain INSERT / UPDATE / DELETE
-- with no function, no seq table and no NOTIFY.  What the three
-- operations cost when they only change the table.

DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;

-- The same tables as the extension's, copied from them (the extension is
-- created first); floor.presence_topic_seq only serves the diagnostic sides
-- (write_floor_notify, write_sql).  run.sh makes them again with
-- bench/sql/copy_shapes.sql and checks that the shapes match.
CREATE TABLE floor.tep_presence (LIKE public.tep_presence INCLUDING ALL);
CREATE TABLE floor.presence_topic_seq (LIKE public.presence_topic_seq INCLUDING ALL);
