-- Capture limits: what a rule's condition (or metric) may cost the session
-- that runs it (time, errors, locks), what a rule's owner needs to read a
-- table, and rules whose table is renamed, dropped or temporary.
\set SHOW_CONTEXT never
CREATE ROLE herald_test_limits NOLOGIN;
GRANT herald_author TO herald_test_limits;
GRANT USAGE ON SCHEMA test TO herald_test_limits;
GRANT EXECUTE ON FUNCTION test.error_of(text) TO herald_test_limits;
SELECT herald.create_channel('limits', 'webhook', test.url('/limits'));
CREATE TABLE lim_orders (id int PRIMARY KEY, code text);
GRANT SELECT, INSERT ON lim_orders TO herald_test_limits;

-- Raises the SQLSTATE it is given (none for NULL).
CREATE FUNCTION lim_raise(code text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF code IS NOT NULL THEN
        RAISE EXCEPTION 'raised %', code USING ERRCODE = code;
    END IF;
    RETURN true;
END
$$;

-- Catches every cancel and goes on sleeping, a hundred times.
CREATE FUNCTION lim_stubborn() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        BEGIN
            PERFORM pg_sleep(0.1);
        EXCEPTION WHEN query_canceled THEN
            RAISE NOTICE 'caught cancel %', i;
        END;
    END LOOP;
    RETURN true;
EXCEPTION WHEN query_canceled THEN
    RETURN public.lim_stubborn();
END
$$;

-- The events of a rule, in order.
CREATE FUNCTION lim_events(rule text) RETURNS TABLE (type text, error text, id text)
LANGUAGE sql AS $$
    SELECT e.type, e.payload ->> 'error', e.payload -> 'new' ->> 'id'
      FROM herald.events e WHERE e.rule = lim_events.rule ORDER BY e.id
$$;

-------------------------------------------------------------------------------
-- A condition's time is bounded by herald.condition_timeout, which only a
-- superuser sets: the author can neither set it nor raise it from the
-- condition.
-------------------------------------------------------------------------------
SELECT name, setting, unit, min_val, max_val, context
  FROM pg_settings WHERE name = 'herald.condition_timeout';
SET ROLE herald_test_limits;
SELECT test.error_of($$SET herald.condition_timeout = '10s'$$);
SELECT herald.on_change('lim-sleep', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'pg_sleep(3) IS NOT NULL');
SELECT herald.on_change('lim-raise-limit', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => $$set_config('herald.condition_timeout', '1h', false) IS NOT NULL$$);
-- a condition that catches the cancel gets no further
SELECT herald.on_change('lim-stubborn', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'public.lim_stubborn()');
RESET ROLE;
-- past the limit the condition is cancelled: the write commits, the rule's
-- channels are told.  An owner's conditions share the limit for a
-- statement (attack_merged.sql), so each of these runs in its own.
SELECT herald.disable_rule('lim-raise-limit'), herald.disable_rule('lim-stubborn');
INSERT INTO lim_orders VALUES (1, NULL);
SELECT herald.disable_rule('lim-sleep'), herald.enable_rule('lim-raise-limit');
DELETE FROM lim_orders WHERE id = 1;
INSERT INTO lim_orders VALUES (1, NULL);
SELECT herald.disable_rule('lim-raise-limit'), herald.enable_rule('lim-stubborn');
DELETE FROM lim_orders WHERE id = 1;
INSERT INTO lim_orders VALUES (1, NULL);
SELECT herald.enable_rule('lim-sleep'), herald.enable_rule('lim-raise-limit');
SELECT id FROM lim_orders ORDER BY id;
SELECT * FROM lim_events('lim-sleep');
SELECT * FROM lim_events('lim-raise-limit');
SELECT * FROM lim_events('lim-stubborn');
SELECT herald.drop_rule('lim-raise-limit');
SELECT herald.drop_rule('lim-stubborn');
-- a writer the superuser gives more time gets it
SET herald.condition_timeout = '1min';
SELECT herald.drop_rule('lim-sleep');
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-nap', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'pg_sleep(0.1) IS NOT NULL');
RESET ROLE;
INSERT INTO lim_orders VALUES (2, NULL);
SELECT * FROM lim_events('lim-nap');
-- the writer's own statement_timeout is a real cancel: its statement fails
SET statement_timeout = '50ms';
INSERT INTO lim_orders VALUES (3, NULL);
RESET statement_timeout;
RESET herald.condition_timeout;
SELECT count(*) AS cancelled_write_kept FROM lim_orders WHERE id = 3;
SELECT herald.drop_rule('lim-nap');

-------------------------------------------------------------------------------
-- Whatever SQLSTATE a condition raises, the write commits and the rule's
-- channels get a rule.error.
-------------------------------------------------------------------------------
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-raise', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'public.lim_raise(NEW.code)');
RESET ROLE;
INSERT INTO lim_orders VALUES (10, 'XX000');  -- internal_error
INSERT INTO lim_orders VALUES (11, 'XX001');  -- data_corrupted
INSERT INTO lim_orders VALUES (12, '53100');  -- disk_full
INSERT INTO lim_orders VALUES (13, '53200');  -- out_of_memory
INSERT INTO lim_orders VALUES (14, '57P01');  -- admin_shutdown
INSERT INTO lim_orders VALUES (15, '57014');  -- query_canceled
INSERT INTO lim_orders VALUES (16, '58030');  -- io_error
INSERT INTO lim_orders VALUES (17, '40P01');  -- deadlock_detected
SELECT string_agg(id::text, ', ' ORDER BY id) AS committed FROM lim_orders WHERE id BETWEEN 10 AND 19;
SELECT * FROM lim_events('lim-raise');
SELECT herald.drop_rule('lim-raise');

-------------------------------------------------------------------------------
-- Session-level advisory locks a condition takes are gone after the
-- statement; those of the writer stay, with their counts, whatever the
-- condition unlocks.
-------------------------------------------------------------------------------
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-lock', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'pg_advisory_lock(4242) IS NOT NULL AND pg_advisory_lock_shared(4243) IS NOT NULL'
                                     ' AND pg_try_advisory_lock(4244) AND pg_advisory_lock(4242) IS NOT NULL');
RESET ROLE;
INSERT INTO lim_orders VALUES (20, NULL);
SELECT count(*) AS advisory_locks_left FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
-- also when the condition fails after taking them
SELECT herald.drop_rule('lim-lock');
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-lock-fail', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'pg_advisory_lock(4242) IS NOT NULL AND public.lim_raise(''XX000'')');
RESET ROLE;
INSERT INTO lim_orders VALUES (21, NULL);
SELECT count(*) AS advisory_locks_left FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT herald.drop_rule('lim-lock-fail');
-- the writer holds 77 twice (session) and 78 for its transaction; the
-- condition unlocks everything it can, and locks 77 once more
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-unlock', 'lim_orders', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'pg_advisory_unlock(77) AND pg_advisory_unlock_all() IS NOT NULL'
                                     ' AND pg_advisory_lock(77) IS NOT NULL AND pg_advisory_lock(78) IS NOT NULL');
RESET ROLE;
SELECT pg_advisory_lock(77), pg_advisory_lock(77);
BEGIN;
SELECT pg_advisory_xact_lock(78);
INSERT INTO lim_orders VALUES (22, NULL);
SELECT objid, mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY objid;
COMMIT;
SELECT objid, mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY objid;
SELECT pg_advisory_unlock(77) AS first, pg_advisory_unlock(77) AS second;
SELECT count(*) AS advisory_locks_left FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT * FROM lim_events('lim-unlock');
SELECT herald.drop_rule('lim-unlock');

-------------------------------------------------------------------------------
-- The same for a threshold rule's metric, run by the scheduler: its errors
-- are the rule's, whatever the SQLSTATE, and its locks do not outlive it.
-------------------------------------------------------------------------------
CREATE TABLE lim_gauge (v int);
GRANT SELECT ON lim_gauge TO herald_test_limits;
SET ROLE herald_test_limits;
SELECT herald.on_threshold('lim-metric-lock', 'SELECT count(*) FROM public.lim_gauge WHERE pg_advisory_lock(4245) IS NOT NULL',
                           '>', 100, ARRAY['limits'], watch => ARRAY['lim_gauge'::regclass]);
SELECT herald.on_threshold('lim-metric-raise', 'SELECT count(*) FROM public.lim_gauge WHERE public.lim_raise(''XX000'')',
                           '>', 100, ARRAY['limits'], watch => ARRAY['lim_gauge'::regclass]);
RESET ROLE;
INSERT INTO lim_gauge VALUES (1);
SELECT herald.flush();
SELECT name, state, error FROM herald.rules WHERE name LIKE 'lim-metric-%' ORDER BY name;
SELECT count(*) AS metric_locks_left FROM pg_locks WHERE locktype = 'advisory' AND objid = 4245;
SELECT herald.drop_rule('lim-metric-lock');
SELECT herald.drop_rule('lim-metric-raise');

-------------------------------------------------------------------------------
-- Reading a table takes USAGE on its schema as well as SELECT on it: at
-- declaration (even given the table's OID) and at every capture.
-------------------------------------------------------------------------------
CREATE SCHEMA lim_private;
CREATE TABLE lim_private.payroll (id int, salary numeric);
GRANT SELECT ON lim_private.payroll TO herald_test_limits;
SELECT 'lim_private.payroll'::regclass::oid AS payroll_oid \gset
SET ROLE herald_test_limits;
SELECT test.error_of(format('SELECT herald.on_change(%L, %s::regclass, ARRAY[%L])',
                            'lim-peek', :payroll_oid, 'limits'));
SELECT test.error_of(format('SELECT herald.on_threshold(%L, %L, %L, 1, ARRAY[%L], watch => ARRAY[%s::regclass])',
                            'lim-peek', 'SELECT 1', '>', 'limits', :payroll_oid));
RESET ROLE;
GRANT USAGE ON SCHEMA lim_private TO herald_test_limits;
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-payroll', 'lim_private.payroll', ARRAY['limits'], ARRAY['INSERT']);
SELECT herald.on_change('lim-payroll-cond', 'lim_private.payroll', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'NEW.salary > 0');
RESET ROLE;
INSERT INTO lim_private.payroll VALUES (1, 100);
REVOKE USAGE ON SCHEMA lim_private FROM herald_test_limits;
INSERT INTO lim_private.payroll VALUES (2, 200);
SELECT * FROM lim_events('lim-payroll');
SELECT * FROM lim_events('lim-payroll-cond');
SELECT herald.drop_rule('lim-payroll');
SELECT herald.drop_rule('lim-payroll-cond');

-------------------------------------------------------------------------------
-- A dropped table (alone or with its schema) disables its rules for good,
-- with a rule.error saying why; they can be dropped.  Commands that drop no
-- watched table change nothing.
-------------------------------------------------------------------------------
CREATE SCHEMA lim_doomed;
CREATE TABLE lim_doomed.shape (id int, color text);
CREATE TABLE lim_survivor (id int);
GRANT USAGE ON SCHEMA lim_doomed TO herald_test_limits;
GRANT SELECT ON lim_doomed.shape, lim_survivor TO herald_test_limits;
SET ROLE herald_test_limits;
SELECT herald.on_change('lim-shape', 'lim_doomed.shape', ARRAY['limits']);
SELECT herald.on_threshold('lim-shapes', 'SELECT count(*) FROM lim_doomed.shape', '>', 10,
                           ARRAY['limits'], watch => ARRAY['lim_doomed.shape'::regclass, 'lim_survivor']);
RESET ROLE;
SELECT herald.flush();
ALTER TABLE lim_doomed.shape DROP COLUMN color;
CREATE TABLE lim_unrelated (id int);
DROP TABLE lim_unrelated;
SELECT name, enabled FROM herald.rules WHERE name LIKE 'lim-shape%' ORDER BY name;
SELECT tgrelid::regclass AS "table", tgname FROM pg_trigger
 WHERE tgname LIKE 'herald%' AND tgrelid IN ('lim_doomed.shape'::regclass, 'lim_survivor'::regclass)
 ORDER BY tgrelid::regclass::text COLLATE "C", tgname;
DROP SCHEMA lim_doomed CASCADE;
SELECT name, state, enabled FROM herald.rules WHERE name LIKE 'lim-shape%' ORDER BY name;
SELECT * FROM lim_events('lim-shape');
SELECT type, payload FROM herald.events WHERE rule = 'lim-shapes' AND type = 'rule.error';
-- the table that remains lost the trigger only the disabled rule needed
SELECT count(*) AS survivor_triggers FROM pg_trigger WHERE tgrelid = 'lim_survivor'::regclass;
SET ROLE herald_test_limits;
SELECT test.error_of($$SELECT herald.enable_rule('lim-shape')$$);
SELECT herald.disable_rule('lim-shapes');
SELECT herald.drop_rule('lim-shape');
SELECT herald.drop_rule('lim-shapes');
RESET ROLE;
SELECT count(*) AS rules_left FROM herald.rule_defs WHERE name LIKE 'lim-shape%';
DROP TABLE lim_survivor;
-- an owner who cannot change pg_herald's tables drops its own table
CREATE SCHEMA lim_own AUTHORIZATION herald_test_limits;
SET ROLE herald_test_limits;
CREATE TABLE lim_own.notes (id int);
SELECT herald.on_change('lim-notes', 'lim_own.notes', ARRAY['limits']);
DROP TABLE lim_own.notes;
SELECT name, enabled FROM herald.rules WHERE name = 'lim-notes';
SELECT * FROM lim_events('lim-notes');
SELECT herald.drop_rule('lim-notes');
RESET ROLE;
DROP SCHEMA lim_own;

-------------------------------------------------------------------------------
-- A table renamed (or moved, or its schema renamed) in a session that has
-- already captured from it: the same session captures with the new name.
-------------------------------------------------------------------------------
CREATE TABLE lim_shape (id int, sides int);
SELECT herald.on_change('lim-sides', 'lim_shape', ARRAY['limits'], ARRAY['INSERT'],
                        condition => 'NEW.sides > 2');
SELECT herald.on_change('lim-any', 'lim_shape', ARRAY['limits'], ARRAY['INSERT']);
INSERT INTO lim_shape VALUES (1, 3);
ALTER TABLE lim_shape RENAME TO lim_polygon;
INSERT INTO lim_polygon VALUES (2, 4);
CREATE SCHEMA lim_geo;
ALTER TABLE lim_polygon SET SCHEMA lim_geo;
INSERT INTO lim_geo.lim_polygon VALUES (3, 5);
ALTER SCHEMA lim_geo RENAME TO lim_geometry;
INSERT INTO lim_geometry.lim_polygon VALUES (4, 6);
ALTER TABLE lim_geometry.lim_polygon ADD COLUMN color text;
INSERT INTO lim_geometry.lim_polygon VALUES (5, 7, 'red');
SELECT rule, type, payload ->> 'table' AS "table", payload -> 'new' AS new
  FROM herald.events WHERE rule IN ('lim-sides', 'lim-any') ORDER BY id;
SELECT herald.drop_rule('lim-sides');
SELECT herald.drop_rule('lim-any');
DROP SCHEMA lim_geometry CASCADE;

-------------------------------------------------------------------------------
-- Temporary tables are refused: a rule would outlive them.
-------------------------------------------------------------------------------
CREATE TEMP TABLE lim_scratch (id int);
SELECT test.error_of($$SELECT herald.on_change('lim-scratch', 'lim_scratch', ARRAY['limits'])$$);
SELECT test.error_of($$SELECT herald.on_threshold('lim-scratch', 'SELECT 1', '>', 1, ARRAY['limits'],
                                                  watch => ARRAY['lim_scratch'::regclass])$$);
DROP TABLE lim_scratch;

SELECT count(*) AS rules_left FROM herald.rule_defs WHERE name LIKE 'lim-%';
SET client_min_messages = warning;
SELECT herald.drop_channel('limits');
RESET client_min_messages;
DROP TABLE lim_orders, lim_gauge;
DROP SCHEMA lim_private CASCADE;
DROP FUNCTION lim_raise(text), lim_stubborn(), lim_events(text);
REVOKE ALL ON SCHEMA test FROM herald_test_limits;
REVOKE ALL ON FUNCTION test.error_of(text) FROM herald_test_limits;
DROP ROLE herald_test_limits;
