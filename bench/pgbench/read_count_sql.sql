-- The same count by a plain SELECT on the table.
SELECT count(*) FROM tep_presence WHERE topic = 't42';
