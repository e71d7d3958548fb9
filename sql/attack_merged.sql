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

-- clean up
SET client_min_messages = warning;
SELECT herald.drop_rule('am-slow-' || g) FROM generate_series(1, 20) AS g \gset
SELECT herald.drop_rule('am-bob');
SELECT herald.drop_channel('am-bus');
DROP SCHEMA am CASCADE;
DROP OWNED BY herald_am_alice, herald_am_bob, herald_am_writer;
DROP ROLE herald_am_alice, herald_am_bob, herald_am_writer;
RESET client_min_messages;
