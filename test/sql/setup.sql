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

-- Settings reach the delivery workers at their next loop after a reload:
-- insert a row into probe_table (watched by a row rule with choices, or
-- none, whose channel is the receiver's probe_path) until the message it
-- sends has actions (want true) or has none (want false): herald.public_url
-- took effect.
CREATE PROCEDURE test.await_actions(probe_table regclass, probe_path text, want boolean)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        EXECUTE format('INSERT INTO %s DEFAULT VALUES', probe_table);
        COMMIT;
        PERFORM herald.flush();
        IF (SELECT ((r ->> 'body')::jsonb -> 'data' ? 'actions')
              FROM test.received(probe_path) r
             ORDER BY (r ->> 'n')::int DESC LIMIT 1) = want THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'the delivery worker did not take the new herald.public_url';
END
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

-- Drop checks of a pg_herald table, remembering them, so that a test can
-- store what the checks refuse (what 0.1.0 accepted, or what a superuser
-- forces) and see that the workers cope; test.restore_checks() puts them
-- back, as they were.
CREATE TABLE test.dropped_checks (tbl regclass, conname name, def text);
CREATE FUNCTION test.drop_checks(tbl regclass, VARIADIC names name[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    FOR c IN SELECT k.conname, pg_get_constraintdef(k.oid) AS def FROM pg_constraint k
              WHERE k.conrelid = tbl AND k.conname = ANY (names) LOOP
        INSERT INTO test.dropped_checks VALUES (tbl, c.conname, c.def);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, c.conname);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
CREATE FUNCTION test.restore_checks() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    FOR c IN DELETE FROM test.dropped_checks RETURNING * LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.tbl, c.conname, c.def);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Run statement (a format() string) with each value in turn, each in its
-- own transaction, waiting for the evaluations and deliveries after each.
CREATE PROCEDURE test.observe(statement text, VARIADIC vals numeric[])
LANGUAGE plpgsql AS $$
DECLARE
    val numeric;
BEGIN
    FOREACH val IN ARRAY vals LOOP
        EXECUTE format(statement, val);
        COMMIT;
        IF NOT herald.flush() THEN
            RAISE EXCEPTION 'herald.flush() timed out';
        END IF;
    END LOOP;
END;
$$;
