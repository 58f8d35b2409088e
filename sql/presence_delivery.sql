--
-- presence_delivery: presence_channel(topic), the channel of a topic's
-- diffs in topic delivery, and the presence.delivery setting.
-- (test/isolation/specs/delivery.spec checks what each mode sends.)
--
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- The documented formula: readable while 'presence:' || topic is a valid
-- channel name (under 64 bytes), else a SHA-256 prefix and the topic's
-- first bytes.
CREATE FUNCTION pg_temp.expected_channel(t text) RETURNS text LANGUAGE sql AS $$
SELECT CASE WHEN octet_length('presence:' || t) < 64 THEN 'presence:' || t
       ELSE 'presence#' || left(encode(sha256(convert_to(t, 'UTF8')), 'hex'), 32)
            || ':' || (SELECT string_agg(c, '' ORDER BY i) FROM (
                 SELECT i, c, sum(octet_length(c)) OVER (ORDER BY i) AS upto
                   FROM regexp_split_to_table(t, '') WITH ORDINALITY AS x(c, i)) s
                WHERE upto <= 21)
       END
$$;

SELECT presence_channel('room:lobby');
SELECT presence_channel(repeat('a', 54)) = 'presence:' || repeat('a', 54) AS readable_54,
       octet_length(presence_channel(repeat('a', 54))) AS bytes;
SELECT presence_channel(repeat('a', 55)) AS hashed_55,
       octet_length(presence_channel(repeat('a', 55))) AS bytes;

-- Valid (under 64 bytes), stable and as documented for the longest topics,
-- ASCII and multibyte (cut at a character boundary).
CREATE TEMP TABLE topics (t text);
INSERT INTO topics VALUES
  (repeat('x', 255)), (repeat('é', 127)), (repeat('🦊', 63)),
  (repeat('中', 85)), ('salle:café☕'), ('🦊'), (repeat('ab"\', 60)),
  (repeat('é', 27)), (repeat('é', 28));
SELECT octet_length(t) AS topic_bytes,
       octet_length(presence_channel(t)) AS channel_bytes,
       presence_channel(t) = pg_temp.expected_channel(t) AS as_documented,
       presence_channel(t) = presence_channel(t || '') AS stable,
       left(presence_channel(t), 9) AS form
  FROM topics ORDER BY 1, 2;
SELECT presence_channel('salle:café☕'), presence_channel(repeat('🦊', 63));

-- Distinct for topics that differ only at their end.
SELECT count(DISTINCT presence_channel(repeat('t', 250) || lpad(n::text, 5, '0'))) AS distinct_channels
  FROM generate_series(1, 1000) n;

-- Bad input, as everywhere.
SELECT pg_temp.try('SELECT presence_channel(NULL)');
SELECT pg_temp.try($$SELECT presence_channel('')$$);
SELECT pg_temp.try($$SELECT presence_channel(repeat('x', 256))$$);

-- presence.delivery: broadcast by default; three values; superuser only.
SHOW presence.delivery;
SELECT pg_temp.try($$SELECT set_config('presence.delivery', 'everywhere', false)$$);
SELECT pg_temp.try($$SELECT set_config('presence.delivery', 'topic', true)$$);
SELECT pg_temp.try($$SELECT set_config('presence.delivery', 'both', true)$$);
CREATE ROLE regress_presence_delivery_user;
SET ROLE regress_presence_delivery_user;
SELECT pg_temp.try($$SELECT set_config('presence.delivery', 'topic', false)$$);
RESET ROLE;
DROP ROLE regress_presence_delivery_user;
SHOW presence.delivery;
