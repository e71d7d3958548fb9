-- Threshold rules: declaration, every transition, hysteresis, pending
-- period, reminders, escalation, grouped rules and no_data, rollback,
-- bursts, min_interval, failing and slow metrics, privileges and row-level
-- security, preview, silences, validation errors.
\set SHOW_CONTEXT never
SELECT herald.create_channel('growth', 'webhook', test.url('/thresholds'));

-- Gauges drive most rules here: one row per gauge, updated one commit at a
-- time.  test.feed() sets a gauge to each value in turn, committing and
-- waiting for the evaluations after each one.
CREATE TABLE gauges (name text PRIMARY KEY, v numeric);
INSERT INTO gauges SELECT n, 0 FROM unnest(ARRAY['flap', 'below', 'slow', 'nag', 'nd-alert', 'nd-keep', 'burst', 'bounded', 'hourly', 'broken', 'muted']) AS n;

CREATE PROCEDURE test.feed(gauge text, VARIADIC vals numeric[])
LANGUAGE plpgsql AS $$
BEGIN
    CALL test.observe(format('UPDATE gauges SET v = %%s WHERE name = %L', gauge), VARIADIC vals);
END;
$$;
CREATE PROCEDURE test.set_null(gauge text)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gauges SET v = NULL WHERE name = gauge;
    COMMIT;
    PERFORM herald.flush();
END;
$$;

-- The state changes and events of a rule, in order.
CREATE FUNCTION test.history(rule text)
RETURNS TABLE (key text, value numeric, state_before text, state_after text, level text, event text)
LANGUAGE sql AS $$
    SELECT e.key, e.value, e.state_before, e.state_after, e.level, ev.type
      FROM herald.evaluations e LEFT JOIN herald.events ev ON ev.id = e.event_id
     WHERE e.rule = history.rule
       AND (e.state_before IS DISTINCT FROM e.state_after OR e.event_id IS NOT NULL)
     ORDER BY e.id
$$;

-- Wait, at most timeout, until a query returns true.
CREATE FUNCTION test.wait_until(query text, timeout interval DEFAULT '10 seconds')
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_deadline timestamptz := clock_timestamp() + timeout;
    v_ok boolean;
BEGIN
    LOOP
        EXECUTE query INTO v_ok;
        IF v_ok OR clock_timestamp() > v_deadline THEN
            RETURN coalesce(v_ok, false);
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END;
$$;

-------------------------------------------------------------------------------
-- A business metric: abandoned baskets, with warning, critical and recovery.
-------------------------------------------------------------------------------
CREATE TABLE visits (id serial PRIMARY KEY, store text NOT NULL, bought boolean NOT NULL DEFAULT false);
SELECT herald.on_threshold(
    name => 'abandoned-baskets',
    metric => 'SELECT count(*) FROM visits WHERE NOT bought',
    op => '>', threshold => 5, warning_threshold => 3, recover_threshold => 2,
    channels => ARRAY['growth'], watch => ARRAY['visits'::regclass],
    message => '{{value}} baskets abandoned ({{level}}, threshold {{threshold}}, was {{previous_state}})');
SELECT herald.flush();
SELECT name, kind, key, state, value, level, op, threshold, watch
  FROM herald.rules WHERE name = 'abandoned-baskets';
-- a disabled trigger marks the table; pg_herald's executor hook notes the writes
SELECT tgname, tgenabled, pg_get_triggerdef(oid) FROM pg_trigger
 WHERE tgrelid = 'visits'::regclass ORDER BY tgname;

INSERT INTO visits (store) SELECT 'paris' FROM generate_series(1, 4);  -- 4: warning
SELECT herald.flush();
SELECT state, value, level FROM herald.rules WHERE name = 'abandoned-baskets';
INSERT INTO visits (store) SELECT 'lyon' FROM generate_series(1, 2);   -- 6: critical
SELECT herald.flush();
UPDATE visits SET bought = true WHERE id <= 3;                          -- 3: not recovered yet
SELECT herald.flush();
SELECT state, value, level FROM herald.rules WHERE name = 'abandoned-baskets';
UPDATE visits SET bought = true WHERE id = 4;                           -- 2: recovered
SELECT herald.flush();
SELECT * FROM test.history('abandoned-baskets');
-- COPY and TRUNCATE are noted too, and so are writes from inside functions
COPY visits (store) FROM PROGRAM 'printf "nice\nnice\nnice\nnice\n"';
SELECT herald.flush();
SELECT state, value FROM herald.rules WHERE name = 'abandoned-baskets';
TRUNCATE visits;
SELECT herald.flush();
SELECT state, value FROM herald.rules WHERE name = 'abandoned-baskets';
DO $$ BEGIN INSERT INTO visits (store) SELECT 'metz' FROM generate_series(1, 4); END $$;
SELECT herald.flush();
SELECT state, value FROM herald.rules WHERE name = 'abandoned-baskets';
DELETE FROM visits;
SELECT herald.flush();
-- delivered with the rule's message
SELECT r -> 'headers' ->> 'webhook-id' IS NOT NULL AS signed,
       (r ->> 'body')::jsonb ->> 'type' AS type,
       (r ->> 'body')::jsonb -> 'data' ->> 'message' AS message,
       (r ->> 'body')::jsonb -> 'data' ->> 'state' AS state
  FROM test.received('/thresholds') AS r;
SELECT status, count(*) FROM herald.deliveries WHERE channel = 'growth' GROUP BY status;

-------------------------------------------------------------------------------
-- Hysteresis: values oscillating around the threshold do not flap.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('flappy', $$SELECT v FROM gauges WHERE name = 'flap'$$, '>', 10,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass],
                           recover_threshold => 5);
-- without a recovery threshold, an instance resolves as soon as the condition is false
SELECT herald.on_threshold('low-stock', $$SELECT v FROM gauges WHERE name = 'below'$$, '<=', 10,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass]);
SELECT herald.flush();
CALL test.feed('below', 20);
CALL test.feed('flap', 11, 9, 12, 6, 11, 10, 5, 4);
SELECT * FROM test.history('flappy');
CALL test.feed('below', 10, 11, 9);
SELECT * FROM test.history('low-stock');

-------------------------------------------------------------------------------
-- Pending period: the condition must hold pending_for before rule.fired.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('slow-burn', $$SELECT v FROM gauges WHERE name = 'slow'$$, '>=', 100,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass],
                           pending_for => '2 seconds');
SELECT herald.flush();
CALL test.feed('slow', 150, 50, 150);
SELECT state, level FROM herald.rules WHERE name = 'slow-burn';
-- no commit needed: the scheduler's timer ends the pending period
SELECT test.wait_until($$SELECT state = 'firing' FROM herald.rules WHERE name = 'slow-burn'$$);
SELECT * FROM test.history('slow-burn');

-------------------------------------------------------------------------------
-- Reminders while firing; escalation happens once per episode.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('nagging', $$SELECT v FROM gauges WHERE name = 'nag'$$, '>', 10,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass],
                           warning_threshold => 5, repeat_every => '1 second');
SELECT herald.flush();
CALL test.feed('nag', 7);
SELECT test.wait_until($$SELECT count(*) >= 1 FROM herald.events
                          WHERE rule = 'nagging' AND type = 'rule.reminder'$$);
CALL test.feed('nag', 20, 8, 20);
SELECT test.wait_until($$SELECT count(*) >= 2 FROM herald.events
                          WHERE rule = 'nagging' AND type = 'rule.reminder'$$);
CALL test.feed('nag', 0);
-- fired at warning, reminded, escalated once, reminded, resolved
SELECT type, payload ->> 'level' AS level, count(*) > 0 AS seen
  FROM (SELECT type, payload, id,
               id - row_number() OVER (PARTITION BY type ORDER BY id) AS run
          FROM herald.events WHERE rule = 'nagging') e
 GROUP BY type, payload ->> 'level', run
 ORDER BY min(id);

-------------------------------------------------------------------------------
-- Grouped rules: one instance per key; a vanished key follows no_data.
-------------------------------------------------------------------------------
CREATE TABLE carts (store text NOT NULL, items int NOT NULL);
SELECT herald.on_threshold('carts-per-store',
                           'SELECT store, sum(items) FROM carts GROUP BY store', '>', 10,
                           ARRAY['growth'], watch => ARRAY['carts'::regclass],
                           message => '{{key}}: {{value}} items');
SELECT herald.on_threshold('carts-per-store-alert',
                           'SELECT store, sum(items) FROM carts GROUP BY store', '>', 10,
                           ARRAY['growth'], watch => ARRAY['carts'::regclass], no_data => 'alert');
INSERT INTO carts VALUES ('paris', 20);
SELECT herald.flush();
INSERT INTO carts VALUES ('lyon', 5);
SELECT herald.flush();
SELECT name, key, state, value FROM herald.rules WHERE name LIKE 'carts-per-store%' ORDER BY 1, 2;
-- lyon crosses on its own; paris goes away
INSERT INTO carts VALUES ('lyon', 10);
SELECT herald.flush();
DELETE FROM carts WHERE store = 'paris';
SELECT herald.flush();
SELECT name, key, state, value FROM herald.rules WHERE name LIKE 'carts-per-store%' ORDER BY 1, 2;
SELECT * FROM test.history('carts-per-store');
SELECT * FROM test.history('carts-per-store-alert');

-- NULL is no data: alert fires, keep holds the state
SELECT herald.on_threshold('nd-alert', $$SELECT v FROM gauges WHERE name = 'nd-alert'$$, '>', 10,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass], no_data => 'alert');
SELECT herald.on_threshold('nd-keep', $$SELECT v FROM gauges WHERE name = 'nd-keep'$$, '>', 10,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass], no_data => 'keep');
SELECT herald.flush();
CALL test.set_null('nd-alert');
CALL test.feed('nd-alert', 1);
CALL test.feed('nd-keep', 20);
CALL test.set_null('nd-keep');
SELECT state FROM herald.rules WHERE name = 'nd-keep';
CALL test.feed('nd-keep', 1);
SELECT * FROM test.history('nd-alert');
SELECT * FROM test.history('nd-keep');

-------------------------------------------------------------------------------
-- A rollback causes no evaluation; a burst of commits coalesces.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('bursty', $$SELECT v FROM gauges WHERE name = 'burst'$$, '>', 500,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass]);
SELECT herald.flush();
CREATE TABLE test.counts AS
SELECT count(*) AS evaluations FROM herald.evaluations WHERE rule = 'bursty';
BEGIN;
UPDATE gauges SET v = 1000 WHERE name = 'burst';
ROLLBACK;
SELECT herald.flush();
SELECT count(*) - (SELECT evaluations FROM test.counts) AS evaluations_after_rollback
  FROM herald.evaluations WHERE rule = 'bursty';

DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        UPDATE gauges SET v = i WHERE name = 'burst';
        COMMIT;
    END LOOP;
END;
$$;
SELECT herald.flush();
SELECT count(*) - (SELECT evaluations FROM test.counts) < 500 AS far_fewer_than_commits
  FROM herald.evaluations WHERE rule = 'bursty';
SELECT state, value FROM herald.rules WHERE name = 'bursty';
SELECT state_before, state_after, event FROM test.history('bursty');

-- min_interval bounds how often a rule is evaluated
SELECT herald.on_threshold('bounded', $$SELECT v FROM gauges WHERE name = 'bounded'$$, '>', 5,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass],
                           min_interval => '1 second');
SELECT herald.flush();
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        UPDATE gauges SET v = i WHERE name = 'bounded';
        COMMIT;
    END LOOP;
END;
$$;
SELECT herald.flush();
SELECT count(*) <= 3 AS at_most_one_per_second, max(value) AS last_value
  FROM herald.evaluations WHERE rule = 'bounded';

-------------------------------------------------------------------------------
-- A failing or slow metric puts its rule in state error; others go on.
-- (Gauge 'broken' is 0 when the rules are declared: 'broken' starts in error.)
-------------------------------------------------------------------------------
SELECT herald.on_threshold('broken', $$SELECT 100 / v FROM gauges WHERE name = 'broken'$$, '>', 5,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass]);
SELECT herald.on_threshold('sleepy', $$SELECT v FROM gauges, pg_sleep(v / 100) WHERE name = 'broken'$$,
                           '>', 5, ARRAY['growth'], watch => ARRAY['gauges'::regclass],
                           query_timeout => '200 milliseconds');
SELECT herald.flush();
CALL test.feed('broken', 10);
SELECT name, state, value, error FROM herald.rules WHERE name IN ('broken', 'sleepy') ORDER BY 1;
CALL test.feed('broken', 0);
CALL test.feed('flap', 30);
SELECT name, state, value, error FROM herald.rules WHERE name IN ('broken', 'sleepy', 'flappy') ORDER BY 1;
-- one rule.error event per failure, not one per evaluation
CALL test.feed('broken', 0);
SELECT type, payload ->> 'error' AS error FROM herald.events WHERE rule = 'broken' ORDER BY id;
CALL test.feed('broken', 50);
SELECT name, state, value, error FROM herald.rules WHERE name IN ('broken', 'sleepy') ORDER BY 1;
SELECT * FROM test.history('sleepy');

-------------------------------------------------------------------------------
-- Preview evaluates now, and fires and stores nothing.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('hourly', $$SELECT v FROM gauges WHERE name = 'hourly'$$, '>', 10,
                           ARRAY['growth'], every => '1 hour');
SELECT herald.flush();
UPDATE gauges SET v = 42 WHERE name = 'hourly';
SELECT herald.flush();
CREATE TABLE test.before_preview AS
SELECT (SELECT count(*) FROM herald.events) AS events,
       (SELECT count(*) FROM herald.evaluations) AS evaluations;
SELECT * FROM herald.preview('hourly');
SELECT * FROM herald.preview('carts-per-store');
SELECT (SELECT count(*) FROM herald.events) - events AS new_events,
       (SELECT count(*) FROM herald.evaluations) - evaluations AS new_evaluations,
       (SELECT state FROM herald.rules WHERE name = 'hourly') AS state
  FROM test.before_preview;

-------------------------------------------------------------------------------
-- Silences: muted events are recorded, not delivered.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('quiet', $$SELECT v FROM gauges WHERE name = 'muted'$$, '>', 10,
                           ARRAY['growth'], watch => ARRAY['gauges'::regclass]);
SELECT herald.flush();
SELECT herald.silence('quiet', now() + interval '1 hour', 'maintenance of the shop') > 0 AS silenced;
SELECT rule, reason, active FROM herald.silences;
SELECT name, silenced_until IS NOT NULL AS silenced FROM herald.rules WHERE name = 'quiet';
CALL test.feed('muted', 20);
SELECT e.type, e.silenced, count(d.id) AS deliveries
  FROM herald.events e LEFT JOIN herald.deliveries d ON d.event_id = e.id
 WHERE e.rule = 'quiet' GROUP BY e.id, e.type, e.silenced ORDER BY e.id;
SELECT herald.unsilence('quiet') AS ended;
SELECT herald.unsilence('quiet') AS ended;
CALL test.feed('muted', 0);
SELECT e.type, e.silenced, count(d.id) AS deliveries
  FROM herald.events e LEFT JOIN herald.deliveries d ON d.event_id = e.id
 WHERE e.rule = 'quiet' GROUP BY e.id, e.type, e.silenced ORDER BY e.id;

-- row rules are silenced too, and a global silence mutes every rule
SELECT herald.on_change('new-visit', 'visits', ARRAY['growth'], ARRAY['INSERT']);
SELECT herald.silence(NULL, now() + interval '1 hour', 'launch day') > 0 AS silenced;
INSERT INTO visits (store) VALUES ('nice');
SELECT herald.unsilence(NULL) AS ended;
INSERT INTO visits (store) VALUES ('nantes');
SELECT herald.flush();
SELECT e.payload -> 'new' ->> 'store' AS store, e.silenced, count(d.id) AS deliveries
  FROM herald.events e LEFT JOIN herald.deliveries d ON d.event_id = e.id
 WHERE e.rule = 'new-visit' GROUP BY e.id, e.payload, e.silenced ORDER BY e.id;
SELECT herald.drop_rule('new-visit');

SELECT test.error_of($$SELECT herald.silence('no-such-rule', now() + interval '1 hour', 'x')$$);
SELECT test.error_of($$SELECT herald.silence('quiet', now() - interval '1 hour', 'x')$$);
SELECT test.error_of($$SELECT herald.silence('quiet', now() + interval '1 hour', ' ')$$);

-------------------------------------------------------------------------------
-- Privileges and row-level security: the metric sees what its owner sees.
-------------------------------------------------------------------------------
CREATE ROLE herald_test_analyst NOLOGIN;
GRANT herald_author TO herald_test_analyst;
GRANT USAGE ON SCHEMA test TO herald_test_analyst;
GRANT EXECUTE ON FUNCTION test.error_of(text) TO herald_test_analyst;

CREATE TABLE sales (seller name NOT NULL, amount numeric NOT NULL);
INSERT INTO sales VALUES ('herald_test_analyst', 10), ('someone_else', 1000), ('someone_else', 2000);
ALTER TABLE sales ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sales ON sales USING (seller = current_user);
GRANT SELECT ON sales TO herald_test_analyst;
CREATE TABLE payroll (employee text, salary numeric);

SET ROLE herald_test_analyst;
SELECT herald.on_threshold('my-sales', 'SELECT sum(amount) FROM public.sales', '<', 100,
                           ARRAY['growth'], every => '1 hour');
SELECT test.error_of($$SELECT herald.on_threshold('peek', 'SELECT sum(salary) FROM public.payroll', '>', 0, ARRAY['growth'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_threshold('peek', $m$SELECT length(pg_read_file('/etc/passwd'))$m$, '>', 0, ARRAY['growth'], every => '1 hour')$$);
RESET ROLE;
SELECT herald.flush();
-- the analyst's own sale only, not the 3,000 of others
SELECT name, owner, state, value FROM herald.rules WHERE name = 'my-sales';
SELECT key, value, state, next_state FROM herald.preview('my-sales');
-- taking the privilege away puts the rule in error, it leaks nothing
REVOKE SELECT ON sales FROM herald_test_analyst;
SELECT key, value, next_state, error FROM herald.preview('my-sales');

-------------------------------------------------------------------------------
-- Validation: each error says what is wrong; nothing is stored.
-------------------------------------------------------------------------------
\set VERBOSITY default
SELECT herald.on_threshold('flappy', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1', '>>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1', '>', NULL, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth']);
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '10 milliseconds');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['no-such-channel'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], watch => ARRAY['herald.event_log'::regclass]);
CREATE VIEW gauge_view AS SELECT * FROM gauges;
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], watch => ARRAY['gauge_view'::regclass]);
SELECT herald.on_threshold('t', 'SELECT count(*) FROM no_such_table', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT count(* FROM gauges', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1; DROP TABLE gauges', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'DELETE FROM gauges RETURNING 1', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1 INTO stolen', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'WITH d AS (DELETE FROM gauges RETURNING v) SELECT count(*) FROM d', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1) AS x, pg_sleep(10) AS y --', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT name, v, v FROM gauges', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT name FROM gauges', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT v, name FROM gauges', '>', 1, ARRAY['growth'], every => '1 hour');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 10, ARRAY['growth'], every => '1 hour', warning_threshold => 20);
SELECT herald.on_threshold('t', 'SELECT 1', '<', 10, ARRAY['growth'], every => '1 hour', warning_threshold => 5);
SELECT herald.on_threshold('t', 'SELECT 1', '=', 10, ARRAY['growth'], every => '1 hour', warning_threshold => 5);
SELECT herald.on_threshold('t', 'SELECT 1', '>', 10, ARRAY['growth'], every => '1 hour', warning_threshold => 5, recover_threshold => 6);
SELECT herald.on_threshold('t', 'SELECT 1', '<', 10, ARRAY['growth'], every => '1 hour', recover_threshold => 9);
SELECT herald.on_threshold('t', 'SELECT 1', '<>', 10, ARRAY['growth'], every => '1 hour', recover_threshold => 9);
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', pending_for => '-1 second');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', repeat_every => '0');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', min_interval => NULL);
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', no_data => 'ignore');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', query_timeout => '2 hours');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', message => '{{value}} {{new.id}}');
SELECT herald.on_threshold('t', 'SELECT 1', '>', 1, ARRAY['growth'], every => '1 hour', message => '{{valeu}}');
SELECT herald.preview('no-such-rule');
SELECT herald.on_change('row-rule', 'visits', ARRAY['growth'], ARRAY['INSERT']);
SELECT herald.preview('row-rule');
SELECT herald.drop_rule('row-rule');
\set VERBOSITY terse
SELECT count(*) AS rules_named_t FROM herald.rule_defs WHERE name = 't';

-------------------------------------------------------------------------------
-- Dropping the last rule that watches a table removes its trigger.
-------------------------------------------------------------------------------
SELECT herald.drop_rule('abandoned-baskets');
SELECT count(*) AS watch_triggers FROM pg_trigger
 WHERE tgrelid = 'visits'::regclass AND tgname = 'herald_watch';
SELECT herald.disable_rule('carts-per-store');
SELECT count(*) AS watch_triggers FROM pg_trigger
 WHERE tgrelid = 'carts'::regclass AND tgname = 'herald_watch';
SELECT herald.disable_rule('carts-per-store-alert');
SELECT count(*) AS watch_triggers FROM pg_trigger
 WHERE tgrelid = 'carts'::regclass AND tgname = 'herald_watch';
SELECT name, state FROM herald.rules WHERE name LIKE 'carts-per-store%' ORDER BY 1;

-------------------------------------------------------------------------------
-- The self-check in herald.rules: how long evaluations take, when and on
-- what each rule is evaluated next, or why it is not.
-------------------------------------------------------------------------------
CREATE TABLE sc_orders (shop text NOT NULL, n int NOT NULL);
INSERT INTO sc_orders VALUES ('paris', 1);
BEGIN;
SELECT herald.on_threshold('sc-scheduled', 'SELECT count(*) FROM sc_orders', '>', 100,
                           ARRAY['growth'], every => '1 hour');
-- declared, not evaluated yet
SELECT name, state, next_evaluation_at, next_evaluation_reason, last_duration_ms
  FROM herald.rules WHERE name = 'sc-scheduled';
COMMIT;
SELECT herald.on_threshold('sc-pending', 'SELECT shop, n FROM sc_orders', '>', 100,
                           ARRAY['growth'], watch => ARRAY['sc_orders'::regclass],
                           pending_for => '1 hour', every => '1 day');
CREATE TABLE sc_quiet (n int);
SELECT herald.on_threshold('sc-throttled', 'SELECT max(n) FROM sc_quiet', '>', 100,
                           ARRAY['growth'], watch => ARRAY['sc_quiet'::regclass, 'visits'::regclass],
                           min_interval => '10 minutes');
SELECT herald.on_change('sc-rows', 'sc_orders', ARRAY['growth'], ARRAY['INSERT', 'UPDATE']);
SELECT test.wait_until($$SELECT bool_and(last_evaluated_at IS NOT NULL) FROM herald.rules
                          WHERE name IN ('sc-scheduled', 'sc-pending', 'sc-throttled')$$) AS evaluated;
UPDATE sc_orders SET n = 200;
SELECT herald.flush();
SELECT test.wait_until($$SELECT state = 'pending' FROM herald.rules WHERE name = 'sc-pending'$$) AS pending;
SELECT name, key, state,
       next_evaluation_at - last_evaluated_at AS next_after_last,
       next_evaluation_reason
  FROM herald.rules WHERE name LIKE 'sc-%' ORDER BY name, key;
-- a timer (the end of the pending period) before the schedule
SELECT next_evaluation_at = i.next_check_at AS at_the_timer,
       i.next_check_at = i.pending_since + interval '1 hour' AS end_of_pending
  FROM herald.rules r JOIN herald.rule_instances i
    ON i.rule_id = (SELECT id FROM herald.rule_defs WHERE name = 'sc-pending') AND i.key = r.key
 WHERE r.name = 'sc-pending';
-- the durations are those of the instance's evaluations (the last one, the
-- mean and the 95th percentile of the last 20)
SELECT r.name,
       r.last_duration_ms = (SELECT e.duration_ms FROM herald.evaluations e
                              WHERE e.rule = r.name AND e.key = r.key
                              ORDER BY e.evaluated_at DESC LIMIT 1) AS last_is_latest,
       r.avg_duration_ms = (SELECT round(avg(e.duration_ms)::numeric, 3)::float8
                              FROM herald.evaluations e WHERE e.rule = r.name AND e.key = r.key)
           AS avg_of_evaluations,
       r.p95_duration_ms >= 0 AND r.p95_duration_ms <= (SELECT max(e.duration_ms) FROM herald.evaluations e
                                                         WHERE e.rule = r.name AND e.key = r.key)
           AS p95_in_range
  FROM herald.rules r WHERE r.name IN ('sc-pending', 'sc-throttled') ORDER BY 1;
-- more than 20 evaluations: the last 20 count (1006 to 1025 ms)
INSERT INTO herald.evaluation_log (rule_id, key, evaluated_at, value, duration_ms, state_after)
SELECT id, '', now() + g * interval '1 minute', 1, 1000 + g, 'ok'
  FROM herald.rule_defs, generate_series(1, 25) g WHERE name = 'sc-throttled';
SELECT last_duration_ms, avg_duration_ms, p95_duration_ms FROM herald.rules WHERE name = 'sc-throttled';
DELETE FROM herald.evaluation_log WHERE rule_id = (SELECT id FROM herald.rule_defs WHERE name = 'sc-throttled')
                                    AND duration_ms > 1000;
-- silenced, disabled
SELECT herald.silence('sc-pending', now() + interval '1 hour', 'maintenance') > 0 AS silenced;
SELECT herald.disable_rule('sc-scheduled');
SELECT herald.disable_rule('sc-rows');
SELECT name, next_evaluation_at IS NOT NULL AS has_next, next_evaluation_reason
  FROM herald.rules WHERE name LIKE 'sc-%' ORDER BY name;
SELECT herald.unsilence('sc-pending');
SELECT herald.drop_rule(n) FROM unnest(ARRAY['sc-scheduled', 'sc-pending', 'sc-throttled', 'sc-rows']) n;
DROP TABLE sc_orders, sc_quiet;

-- clean up for the tests that follow
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE kind = 'threshold';
DROP OWNED BY herald_test_analyst;
DROP ROLE herald_test_analyst;
