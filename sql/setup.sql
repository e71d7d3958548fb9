-- A fresh pg_herald and the helpers the other tests share.
\getenv receiver_url HERALD_RECEIVER_URL
\getenv receiver_log HERALD_RECEIVER_LOG
\getenv test_dir HERALD_TEST_DIR
\getenv smtp_url HERALD_SMTP_URL
\getenv smtp_log HERALD_SMTP_LOG
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_herald CASCADE;
DROP SCHEMA IF EXISTS test CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_herald;

CREATE SCHEMA test;
CREATE TABLE test.config (url text, log text, dir text, smtp_url text, smtp_log text);
INSERT INTO test.config VALUES (:'receiver_url', :'receiver_log', :'test_dir',
                                :'smtp_url', :'smtp_log');

-- Requests the local receiver recorded whose path starts with prefix.
CREATE FUNCTION test.received(prefix text) RETURNS SETOF jsonb
LANGUAGE sql AS $$
    SELECT line::jsonb
      FROM regexp_split_to_table(pg_read_file((SELECT log FROM test.config)), E'\n') AS line
     WHERE line <> '' AND (line::jsonb ->> 'path') LIKE prefix || '%'
     ORDER BY (line::jsonb ->> 'n')::int
$$;

-- Messages the local SMTP server received, in order.
CREATE FUNCTION test.mails() RETURNS SETOF jsonb
LANGUAGE sql AS $$
    SELECT line::jsonb
      FROM regexp_split_to_table(pg_read_file((SELECT smtp_log FROM test.config)), E'\n') AS line
     WHERE line <> ''
     ORDER BY (line::jsonb ->> 'n')::int
$$;

-- The receiver URL for a path (and query string).
CREATE FUNCTION test.url(path text) RETURNS text
LANGUAGE sql AS $$ SELECT (SELECT url FROM test.config) || path $$;

-- The SQLSTATE and message of the error a statement raises, with numbers
-- (ids that depend on earlier tests) replaced by N.
CREATE FUNCTION test.error_of(statement text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END
$$;

SELECT count(*) > 0 AS receiver_ready FROM test.config WHERE url LIKE 'http://127.0.0.1:%';
