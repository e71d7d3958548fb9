-- A hostile author against pg_herald's boundary, after rule_code.sql: the
-- routes that go around the API gate rather than through it.  Each piece of
-- the author's code that runs records who ran it (a superuser shows as
-- "a superuser"), so the tables below say whose rights it had.
\set SHOW_CONTEXT never
CREATE ROLE herald_ag_alice NOLOGIN;
CREATE ROLE herald_ag_bob NOLOGIN;
CREATE ROLE herald_ag_admin NOLOGIN;
GRANT herald_author TO herald_ag_alice, herald_ag_bob;
GRANT herald_admin TO herald_ag_admin;
GRANT USAGE ON SCHEMA test TO herald_ag_alice, herald_ag_bob, herald_ag_admin;
GRANT EXECUTE ON FUNCTION test.error_of(text) TO herald_ag_alice, herald_ag_bob, herald_ag_admin;
CREATE SCHEMA ag AUTHORIZATION herald_ag_alice;

SET ROLE herald_ag_admin;
SELECT herald.create_channel('ag-bus', 'notify', 'herald_ag');
RESET ROLE;

SET ROLE herald_ag_alice;
-- Who ran alice's code, and what it tried.
CREATE TABLE ag.ran (n serial, who text, what text, outcome text);
GRANT USAGE ON SCHEMA ag TO PUBLIC;
GRANT INSERT ON ag.ran TO PUBLIC;
GRANT USAGE ON SEQUENCE ag.ran_n_seq TO PUBLIC;
CREATE FUNCTION ag.who() RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN rolsuper THEN 'a superuser' ELSE rolname::text END
            FROM pg_roles WHERE rolname = current_user $$;
CREATE FUNCTION ag.note(what text, outcome text) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO ag.ran (who, what, outcome) VALUES (ag.who(), what, outcome) RETURNING true $$;
-- Runs a statement and notes whether it worked.
CREATE FUNCTION ag.try(stmt text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN ag.note(stmt, 'done');
EXCEPTION WHEN OTHERS THEN
    RETURN ag.note(stmt, SQLERRM);
END
$$;
RESET ROLE;

-------------------------------------------------------------------------------
-- Row payloads.  to_jsonb() renders a value through its type's cast to json:
-- alice's type, alice's cast, alice's function, run by whoever builds the
-- payload.  A superuser's rule (no condition) on alice's table, and bob's
-- rules on it, must not run it: payloads show the value's text instead.  A
-- cast whose function a superuser owns is still used.
-------------------------------------------------------------------------------
CREATE TYPE ag_switch AS ENUM ('on', 'off');
CREATE FUNCTION ag_switch_json(ag_switch) RETURNS json LANGUAGE sql IMMUTABLE
    AS $$ SELECT json_build_object('switch', $1::text) $$;
CREATE CAST (ag_switch AS json) WITH FUNCTION ag_switch_json(ag_switch);

SET ROLE herald_ag_alice;
CREATE TYPE ag.mood AS ENUM ('calm', 'angry');
CREATE FUNCTION ag.mood_json(ag.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ag.note('cast of ag.mood to json', 'ran');
    RETURN '"forged"';
END
$$;
CREATE CAST (ag.mood AS json) WITH FUNCTION ag.mood_json(ag.mood);
CREATE TYPE ag.pair AS (m ag.mood, ms ag.mood[]);
CREATE TABLE ag.orders (id int PRIMARY KEY, amount numeric);
GRANT SELECT, INSERT, UPDATE, DELETE ON ag.orders TO herald_ag_bob;
RESET ROLE;
-- declared while every column is of a built-in type
SELECT herald.on_change('ag-superuser', 'ag.orders', ARRAY['ag-bus']);
SET ROLE herald_ag_bob;
SELECT herald.on_change('ag-bob', 'ag.orders', ARRAY['ag-bus']);
SELECT herald.on_change('ag-bob-if', 'ag.orders', ARRAY['ag-bus'], condition => 'NEW.id > 0 OR OLD.id > 0');
RESET ROLE;
-- then alice changes her table
SET ROLE herald_ag_alice;
ALTER TABLE ag.orders ADD COLUMN mood ag.mood, ADD COLUMN pair ag.pair, ADD COLUMN moods ag.mood[],
                      ADD COLUMN switch ag_switch;
INSERT INTO ag.orders VALUES (1, 10, 'angry', ROW('calm', '{{calm,angry},{angry,calm}}'), '{}', 'on');
RESET ROLE;
SET ROLE herald_ag_bob;
UPDATE ag.orders SET amount = 20;
DELETE FROM ag.orders;
RESET ROLE;
SELECT rule, payload ->> 'operation' AS op, payload -> 'new' AS new, payload -> 'old' AS old
  FROM herald.events WHERE rule LIKE 'ag-%' ORDER BY id;
SELECT who, what FROM ag.ran ORDER BY n;
SELECT herald.drop_rule(r) FROM unnest(ARRAY['ag-superuser', 'ag-bob', 'ag-bob-if']) AS r;

-------------------------------------------------------------------------------
-- A condition, run in a superuser's INSERT: it cannot change roles, leave
-- prepared statements, cursors, temporary objects or listeners behind, and
-- the settings it changes end with it.
-------------------------------------------------------------------------------
SET ROLE herald_ag_alice;
CREATE TABLE ag.tickets (id int, title text);
SELECT herald.on_change('ag-meddler', 'ag.tickets', ARRAY['ag-bus'], ARRAY['INSERT'], condition => $c$
    ag.try('SET ROLE NONE') AND ag.try('RESET ROLE') AND ag.try($$SELECT set_config('role', 'none', false)$$)
    AND ag.try('SET SESSION AUTHORIZATION DEFAULT') AND ag.try('PREPARE ag_stmt AS SELECT 1')
    AND ag.try('DEALLOCATE ALL') AND ag.try('LISTEN herald_ag') AND ag.try('DISCARD ALL')
    AND ag.try('CLOSE ALL') AND ag.try('DECLARE ag_held CURSOR WITH HOLD FOR SELECT 1')
    AND ag.try('CREATE TEMP TABLE ag_temp (x int)')
    AND ag.try('CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (ag.note(VALUE, ''domain check''))')
    AND ag.try($$SELECT set_config('search_path', 'ag', false)$$)
    AND ag.try('SET statement_timeout = 1') AND ag.try($$SELECT set_config('ag.planted', 'yes', false)$$)
    AND ag.note(current_setting('search_path'), 'search_path after setting it')
$c$);
RESET ROLE;
DELETE FROM ag.ran;
PREPARE ag_stmt AS SELECT 'the writer''s statement' AS stmt;
SET search_path = public;
-- The condition makes sixteen attempts, each in its own subtransaction:
-- on a slow machine (an assertion build) more than the 50 ms default of
-- herald.condition_timeout, which this test is not about.
SET herald.condition_timeout = '10s';
INSERT INTO ag.tickets VALUES (1, 'a superuser writes');
SHOW search_path;
RESET search_path;
RESET herald.condition_timeout;
SELECT who, what, outcome FROM ag.ran ORDER BY n;
EXECUTE ag_stmt;
DEALLOCATE ag_stmt;
SHOW statement_timeout;
SELECT current_setting('ag.planted', true) AS planted;
SELECT 'not a domain'::text AS text_is_text;
SELECT count(*) AS cursors FROM pg_cursors;
SELECT rule, type FROM herald.events WHERE rule = 'ag-meddler';
SELECT herald.drop_rule('ag-meddler');

-------------------------------------------------------------------------------
-- A metric, previewed by an administrator: it runs as alice, and the
-- administrator's session is as it was.
-------------------------------------------------------------------------------
SET ROLE herald_ag_alice;
-- A metric is read-only: it reports what it tried in its error.
CREATE FUNCTION ag.attempt(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN stmt || ': done';
EXCEPTION WHEN OTHERS THEN
    RETURN stmt || ': ' || SQLERRM;
END
$$;
CREATE FUNCTION ag.meddle() RETURNS numeric LANGUAGE plpgsql AS $f$
BEGIN
    RAISE EXCEPTION 'ran as % | %', ag.who(),
        concat_ws(' | ', ag.attempt('SET ROLE NONE'), ag.attempt('RESET ROLE'),
                  ag.attempt('SET SESSION AUTHORIZATION DEFAULT'),
                  ag.attempt($$SELECT set_config('work_mem', '64MB', false)$$),
                  ag.attempt('SELECT count(*) FROM herald.channel_defs'));
END
$f$;
-- watching a table nobody writes: only the preview runs it
CREATE TABLE ag.quiet (x int);
SELECT herald.on_threshold('ag-metric', 'SELECT ag.meddle()', '>', 5, ARRAY['ag-bus'],
                           watch => ARRAY['ag.quiet'::regclass]);
RESET ROLE;
DELETE FROM ag.ran;
SET ROLE herald_ag_admin;
SHOW work_mem;
SELECT key, value, next_state, regexp_split_to_table(error, ' \| ') AS error
  FROM herald.preview('ag-metric');
SHOW work_mem;
SELECT current_user;
RESET ROLE;
SELECT herald.drop_rule('ag-metric');

-------------------------------------------------------------------------------
-- The caller stack: an administrator's cursor over an API function, fetched
-- around a call of alice's SECURITY DEFINER function that declares a rule,
-- and an API error caught in an EXCEPTION block.
-------------------------------------------------------------------------------
SET ROLE herald_ag_alice;
CREATE FUNCTION ag.declare_for_me(rule text) RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    BEGIN
        PERFORM herald.on_change(rule, 'ag.tickets', ARRAY['no such channel']);
    EXCEPTION WHEN undefined_object THEN
        PERFORM ag.note('after a caught error', 'current_user ' || current_user);
    END;
    PERFORM herald.on_change(rule, 'ag.tickets', ARRAY['ag-bus']);
    RETURN current_user;
END
$$;
GRANT EXECUTE ON FUNCTION ag.declare_for_me(text) TO herald_ag_admin;
RESET ROLE;
DELETE FROM ag.ran;
SET ROLE herald_ag_admin;
BEGIN;
-- a set-returning function in the select list: one call per fetch
DECLARE ag_report CURSOR FOR
    SELECT herald.decision_report(now() - interval '1 hour', now() + interval '1 hour');
FETCH 1 FROM ag_report \g /dev/null
SELECT ag.declare_for_me('ag-stacked');
FETCH 1 FROM ag_report \g /dev/null
COMMIT;
SELECT current_user;
RESET ROLE;
SELECT who, what, outcome FROM ag.ran ORDER BY n;
SELECT name, owner FROM herald.rules WHERE name = 'ag-stacked';
-- no call is left open
SELECT test.error_of($$SELECT herald._invoker()$$);
SELECT herald.drop_rule('ag-stacked');

-------------------------------------------------------------------------------
-- Names: a function of alice's named like the API's is hers, run as its
-- caller, not switched to the extension's owner; a table and a column named
-- to break the statements pg_herald writes are captured like any other.
-------------------------------------------------------------------------------
SET ROLE herald_ag_alice;
CREATE FUNCTION ag.flush(timeout interval DEFAULT '1 second') RETURNS text LANGUAGE sql
    AS $$ SELECT ag.who() $$;
SELECT ag.flush() AS ran_as;
CREATE TABLE ag."t'); DELETE FROM ag.ran; --" ("new"".x}}" int, "'" text);
SELECT herald.on_change('ag-names', 'ag."t''); DELETE FROM ag.ran; --"', ARRAY['ag-bus'],
                        condition => 'NEW."new"".x}}" > 0', message => 'got {{new.''}}');
RESET ROLE;
DELETE FROM ag.ran;
SELECT ag.note('still here', 'before');
INSERT INTO ag."t'); DELETE FROM ag.ran; --" VALUES (1, 'quoted');
SELECT count(*) AS notes FROM ag.ran;
SELECT rule, payload ->> 'table' AS tbl, payload -> 'new' AS new
  FROM herald.events WHERE rule = 'ag-names';
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ag."t''); DELETE FROM ag.ran; --"'::regclass ORDER BY 1;
SELECT herald.drop_rule('ag-names');

-------------------------------------------------------------------------------
-- An author that may create schemas makes schema herald before the
-- extension: CREATE EXTENSION would adopt it, and its overloads (here
-- herald.acknowledge(integer), which SELECT herald.acknowledge(42) calls)
-- would run as whoever calls them.  The installation refuses.
-------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP DATABASE IF EXISTS herald_ag_pre;
RESET client_min_messages;
CREATE DATABASE herald_ag_pre;
GRANT CREATE ON DATABASE herald_ag_pre TO herald_ag_alice;
\c herald_ag_pre
\set SHOW_CONTEXT never
SET ROLE herald_ag_alice;
CREATE SCHEMA herald;
GRANT USAGE ON SCHEMA herald TO PUBLIC;
CREATE FUNCTION herald.acknowledge(event_id integer) RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT 0::bigint $$;
RESET ROLE;
SET client_min_messages = error;
CREATE EXTENSION pg_herald;
RESET client_min_messages;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'pg_herald';
-- the same schema given to a superuser still holds alice's function
ALTER SCHEMA herald OWNER TO CURRENT_USER;
SET client_min_messages = error;
CREATE EXTENSION pg_herald;
RESET client_min_messages;
DROP SCHEMA herald CASCADE;
SET client_min_messages = error;
CREATE EXTENSION pg_herald;
RESET client_min_messages;
SELECT extname FROM pg_extension WHERE extname = 'pg_herald';
\c herald
DROP DATABASE herald_ag_pre WITH (FORCE);

-- clean up
SET client_min_messages = warning;
SELECT herald.flush();
SELECT herald.drop_channel('ag-bus');
DROP SCHEMA ag CASCADE;
DROP TYPE ag_switch CASCADE;
DROP OWNED BY herald_ag_alice, herald_ag_bob, herald_ag_admin;
DROP ROLE herald_ag_alice, herald_ag_bob, herald_ag_admin;
RESET client_min_messages;
