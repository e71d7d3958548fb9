-- A hostile author against the merged fixes of the first defects: what one
-- author alone can do to writers and to other owners' rules.
\set SHOW_CONTEXT never
CREATE ROLE herald_am_alice NOLOGIN;
CREATE ROLE herald_am_bob NOLOGIN;
CREATE ROLE herald_am_writer NOLOGIN;
GRANT herald_author TO herald_am_alice, herald_am_bob;
CREATE SCHEMA am AUTHORIZATION herald_am_alice;
GRANT USAGE ON SCHEMA am TO PUBLIC;
CREATE TABLE am.orders (id int, v text);
GRANT SELECT ON am.orders TO herald_am_alice, herald_am_bob;
GRANT INSERT ON am.orders TO herald_am_writer;
SELECT herald.create_channel('am-bus', 'notify', 'herald_am');

-- Many rules, one author: each condition takes just under
-- herald.condition_timeout.  They share it for a statement, so the
-- writer waits about one condition_timeout, not one per rule.
SET ROLE herald_am_alice;
CREATE FUNCTION am.slow() RETURNS boolean LANGUAGE sql
    AS $$ SELECT pg_sleep(0.1) IS NOT NULL $$;
SELECT count(herald.on_change('am-slow-' || g, 'am.orders', ARRAY['am-bus'],
                              condition => 'am.slow()'))
  FROM generate_series(1, 20) AS g;
RESET ROLE;
-- bob's rule on the same table does not pay for alice's
SET ROLE herald_am_bob;
SELECT herald.on_change('am-bob', 'am.orders', ARRAY['am-bus'], condition => 'true');
RESET ROLE;

SET herald.condition_timeout = '200ms';
CREATE TEMP TABLE am_clock (t timestamptz);
INSERT INTO am_clock SELECT clock_timestamp();
SET client_min_messages = error;
SET ROLE herald_am_writer;
INSERT INTO am.orders VALUES (1, 'x');
RESET ROLE;
RESET client_min_messages;
SELECT clock_timestamp() - t < interval '1.5 seconds' AS writer_waited_one_timeout
  FROM am_clock;
RESET herald.condition_timeout;
-- alice's rules: at most two captured, every other one a rule.error
SELECT count(*) FILTER (WHERE type = 'row.inserted') <= 2 AS few_captured,
       count(*) FILTER (WHERE type = 'rule.error') >= 18 AS rest_failed,
       count(*) = 20 AS one_each
  FROM herald.events WHERE rule LIKE 'am-slow-%';
SELECT DISTINCT payload ->> 'error' AS error
  FROM herald.events
 WHERE rule LIKE 'am-slow-%' AND type = 'rule.error'
   AND payload ->> 'error' LIKE '%used up%';
SELECT type FROM herald.events WHERE rule = 'am-bob';

-- Many metrics of one author, each just under herald.evaluation_slice:
-- they share one slice per round of the scheduler, the rest go to alice's
-- evaluator, and bob's rule due every second keeps its pace.
SET ROLE herald_am_alice;
CREATE FUNCTION am.slow_metric() RETURNS numeric LANGUAGE sql
    AS $$ SELECT 1::numeric FROM pg_sleep(0.5) $$;
SELECT count(*) FROM (
    SELECT herald.on_threshold('am-metric-' || g, 'SELECT am.slow_metric()', '>', 5,
                               ARRAY['am-bus'], every => '1 second', query_timeout => '2 s')
      FROM generate_series(1, 8) AS g) AS d;
RESET ROLE;
SET ROLE herald_am_bob;
SELECT herald.on_threshold('am-bob-metric', 'SELECT 1', '>', 5, ARRAY['am-bus'],
                           every => '1 second');
RESET ROLE;
-- before: a round took 8 x 0.5 s, and bob's rule was evaluated every 4 s
CREATE FUNCTION pg_temp.am_wait_bob(n int) RETURNS interval LANGUAGE plpgsql AS $$
DECLARE
    start timestamptz := clock_timestamp();
    first timestamptz;
BEGIN
    LOOP
        SELECT min(evaluated_at) INTO first FROM herald.evaluations
         WHERE rule = 'am-bob-metric' AND evaluated_at > start;
        EXIT WHEN first IS NOT NULL;
        EXIT WHEN clock_timestamp() > start + interval '30 seconds';
        PERFORM pg_sleep(0.05);
    END LOOP;
    LOOP
        EXIT WHEN (SELECT count(*) FROM herald.evaluations
                    WHERE rule = 'am-bob-metric' AND evaluated_at >= first) >= n;
        EXIT WHEN clock_timestamp() > start + interval '60 seconds';
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN clock_timestamp() - first;
END
$$;
SELECT pg_temp.am_wait_bob(5) < interval '8 seconds' AS bob_keeps_pace;
SELECT count(*) FROM (SELECT herald.drop_rule('am-metric-' || g) FROM generate_series(1, 8) AS g) AS d;
SELECT herald.drop_rule('am-bob-metric');

-- A grouped metric returning millions of keys would hold them all in the
-- evaluating backend and make as many instances and events: past 10,000
-- keys the evaluation fails, and its rule says so.
SET ROLE herald_am_alice;
SELECT herald.on_threshold('am-groups', 'SELECT g::text, 10 FROM generate_series(1, 5000000) AS g',
                           '>', 5, ARRAY['am-bus'], every => '1 hour');
RESET ROLE;
SELECT herald.flush();
SELECT state, error FROM herald.rules WHERE name = 'am-groups';
SELECT count(*) AS instances FROM herald.rule_instances i
  JOIN herald.rule_defs r ON r.id = i.rule_id WHERE r.name = 'am-groups' AND i.key <> '';
SELECT herald.drop_rule('am-groups');

-- clean up
SET client_min_messages = warning;
SELECT count(*) FROM (SELECT herald.drop_rule('am-slow-' || g) FROM generate_series(1, 20) AS g) AS d;
SELECT herald.drop_rule('am-bob');
SELECT herald.drop_channel('am-bus');
DROP SCHEMA am CASCADE;
DROP OWNED BY herald_am_alice, herald_am_bob, herald_am_writer;
DROP ROLE herald_am_alice, herald_am_bob, herald_am_writer;
RESET client_min_messages;
