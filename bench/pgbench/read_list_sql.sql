-- The same rows by a plain SELECT on the table (a superuser's view).
SELECT * FROM tep_presence WHERE topic = 't42' ORDER BY since_ts, worker_id, fd;
