-- 10,000 expired statuses, one in each topic: the entries with fd = :fd
-- (psql variable) get a status that ran out a minute ago.
\set ON_ERROR_STOP 1
UPDATE tep_presence
   SET status_state = 'busy', status_note = 'lunch',
       status_until = floor(extract(epoch FROM now()))::bigint - 60
 WHERE fd = :fd AND topic ~ '^t[0-9]+$';
VACUUM tep_presence, presence_topic_seq;
