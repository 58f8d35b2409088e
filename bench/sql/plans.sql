-- Plans of the reads: the functions' own (nested) queries through
-- auto_explain, after enough calls that the plan cache has settled, and
-- the equivalent plain SELECTs with EXPLAIN (ANALYZE, BUFFERS).
\set ON_ERROR_STOP 1
SELECT count(*) FROM presence_list_global('t42'), generate_series(1, 10);
SELECT sum(presence_count_global('t42')) FROM generate_series(1, 10);
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
\echo '--- presence_list_global(''t42''): the query it runs, via auto_explain'
SELECT count(*) FROM presence_list_global('t42');
\echo '--- presence_count_global(''t42''): the query it runs, via auto_explain'
SELECT presence_count_global('t42');
SET auto_explain.log_min_duration = -1;
\echo '--- the function call itself'
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM presence_list_global('t42');
\echo '--- the equivalent plain SELECT'
EXPLAIN (ANALYZE, BUFFERS)
SELECT * FROM tep_presence WHERE topic = 't42' ORDER BY since_ts, worker_id, fd;
\echo '--- the equivalent plain count'
EXPLAIN (ANALYZE, BUFFERS)
SELECT count(*), count(*) FILTER (WHERE kind = 'human'),
       count(*) FILTER (WHERE kind = 'agent_for')
  FROM tep_presence WHERE topic = 't42';
