-- herald.alter_rule(): every parameter of a row rule and of a threshold
-- rule changed in place, validated as a declaration is (same messages),
-- the owner's rights, the state of firing instances, the change log and
-- the timeline; drop_rule() keeping the history readable by the owner.
\set SHOW_CONTEXT never
CREATE ROLE herald_ar_admin NOLOGIN;
CREATE ROLE herald_ar_alice NOLOGIN;
CREATE ROLE herald_ar_bob NOLOGIN;
GRANT herald_admin TO herald_ar_admin;
GRANT herald_author TO herald_ar_alice, herald_ar_bob;
GRANT USAGE ON SCHEMA test TO herald_ar_admin, herald_ar_alice, herald_ar_bob;
GRANT EXECUTE ON FUNCTION test.error_of(text), test.url(text)
    TO herald_ar_admin, herald_ar_alice, herald_ar_bob;
GRANT SELECT ON test.config TO herald_ar_admin;

CREATE TABLE ar_orders (id int PRIMARY KEY, amount numeric, status text);
CREATE TABLE ar_refunds (id int PRIMARY KEY, amount numeric);
CREATE TABLE ar_gauge (v numeric);
CREATE TABLE ar_gauge2 (v numeric);
CREATE TABLE ar_secret (v numeric);          -- alice may not read it
INSERT INTO ar_gauge VALUES (0);
INSERT INTO ar_gauge2 VALUES (0);
GRANT SELECT ON ar_orders, ar_refunds, ar_gauge, ar_gauge2 TO herald_ar_alice, herald_ar_bob;
GRANT SELECT ON ar_secret TO herald_ar_admin;

-- Has every instance of the rule been evaluated since its last change?
CREATE FUNCTION test.ar_evaluated(rule text) RETURNS boolean
LANGUAGE sql AS $$
    SELECT bool_and(i.last_evaluated_at > r.altered_at)
      FROM herald.rule_defs r JOIN herald.rule_instances i ON i.rule_id = r.id
     WHERE r.name = ar_evaluated.rule
$$;

SET ROLE herald_ar_admin;
SELECT herald.create_channel('ar-a', 'webhook', test.url('/alter/a'));
SELECT herald.create_channel('ar-b', 'webhook', test.url('/alter/b'));
SELECT herald.create_channel('ar-mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['ops@example.com'], sender => 'herald@example.com');
RESET ROLE;

-------------------------------------------------------------------------------
-- A row rule: every parameter, and capture from the next statement on.
-------------------------------------------------------------------------------
SET ROLE herald_ar_alice;
SELECT herald.on_change('ar-orders', 'ar_orders', ARRAY['ar-a'], operations => '{INSERT}',
                        condition => 'NEW.amount > 100');
RESET ROLE;
INSERT INTO ar_orders VALUES (1, 150, 'new');
SET ROLE herald_ar_alice;
SELECT herald.alter_rule('ar-orders', condition => 'NEW.amount > 1000',
                         operations => '{insert,update}', channels => ARRAY['ar-b'],
                         message => 'big order {{new.id}}: {{new.amount}}');
RESET ROLE;
INSERT INTO ar_orders VALUES (2, 150, 'new');     -- no longer matches
INSERT INTO ar_orders VALUES (3, 1500, 'new');    -- matches, to ar-b
UPDATE ar_orders SET status = 'paid' WHERE id = 3;
SELECT herald.flush();
SET ROLE herald_ar_alice;
SELECT e.type, e.payload -> 'new' ->> 'id' AS id
  FROM herald.events e WHERE e.rule = 'ar-orders' ORDER BY e.id;
SELECT d.channel, count(*) FROM herald.deliveries d
  JOIN herald.events e ON e.id = d.event_id
 WHERE e.rule = 'ar-orders' GROUP BY 1 ORDER BY 1;
SELECT name, kind, state, on_table, operations, condition, message, channels
  FROM herald.rules WHERE name = 'ar-orders';
RESET ROLE;
-- the new message, on the new channel
SELECT DISTINCT (r ->> 'body')::jsonb -> 'data' ->> 'message' AS message
  FROM test.received('/alter/b') AS r ORDER BY 1;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ar_orders'::regclass AND tgname LIKE 'herald%' ORDER BY 1;

-- the other parameters, the table included, and a new name
SET ROLE herald_ar_alice;
SELECT herald.alter_rule('ar-orders', on_table => 'ar_refunds', operations => '{DELETE}',
                         condition => 'OLD.amount > 10', message => 'refund {{old.id}} gone',
                         followup_after => '1 hour', followup_every => '2 hours',
                         choices => ARRAY['Refund again', 'Ignore'], announce_decisions => false);
SELECT herald.alter_rule('ar-orders', new_name => 'ar-refunds');
RESET ROLE;
SELECT name, on_table, operations, condition, message, followup_after, followup_every, choices,
       announce_decisions, altered_at IS NOT NULL AS altered
  FROM herald.rule_defs WHERE name = 'ar-refunds';
SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relname IN ('ar_orders', 'ar_refunds') AND t.tgname LIKE 'herald%' ORDER BY 1, 2;

-- reset: back to what a declaration without them has
SET ROLE herald_ar_alice;
SELECT herald.alter_rule('ar-refunds', reset => '{condition,message,followup_every,choices,announce_decisions}');
SELECT herald.alter_rule('ar-refunds', reset => '{followup_after}');
RESET ROLE;
SELECT name, condition, message, followup_after, followup_every, choices, announce_decisions
  FROM herald.rule_defs WHERE name = 'ar-refunds';

-- nothing to change: nothing recorded
SET ROLE herald_ar_alice;
SELECT herald.alter_rule('ar-refunds', operations => '{DELETE}', channels => ARRAY['ar-b']);
SELECT rule, changed_by, changes FROM herald.rule_changes
 WHERE rule = 'ar-refunds' ORDER BY id;

-------------------------------------------------------------------------------
-- Validation: the errors of a declaration, with the same messages; nothing
-- is stored.
-------------------------------------------------------------------------------
SELECT test.error_of(d) AS declared, test.error_of(a) AS altered
  FROM (VALUES
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], condition => 'NEW.nope > 1')$$,
     $$SELECT herald.alter_rule('ar-refunds', on_table => 'ar_orders', condition => 'NEW.nope > 1')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], condition => 'NEW.amount')$$,
     $$SELECT herald.alter_rule('ar-refunds', on_table => 'ar_orders', condition => 'NEW.amount')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], condition => '-- nothing')$$,
     $$SELECT herald.alter_rule('ar-refunds', condition => '-- nothing')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], operations => '{TRUNCATE}')$$,
     $$SELECT herald.alter_rule('ar-refunds', operations => '{TRUNCATE}')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], operations => '{}')$$,
     $$SELECT herald.alter_rule('ar-refunds', operations => '{}')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-nope'])$$,
     $$SELECT herald.alter_rule('ar-refunds', channels => ARRAY['ar-nope'])$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', '{}')$$,
     $$SELECT herald.alter_rule('ar-refunds', channels => '{}')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_secret', ARRAY['ar-a'])$$,
     $$SELECT herald.alter_rule('ar-refunds', on_table => 'ar_secret')$$),
    ($$SELECT herald.on_change('ar-x', 'herald.rule_defs', ARRAY['ar-a'])$$,
     $$SELECT herald.alter_rule('ar-refunds', on_table => 'herald.rule_defs')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], message => '{{new.nope}}')$$,
     $$SELECT herald.alter_rule('ar-refunds', on_table => 'ar_orders', message => '{{new.nope}}')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], message => '{{value}}')$$,
     $$SELECT herald.alter_rule('ar-refunds', message => '{{value}}')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], followup_after => '0')$$,
     $$SELECT herald.alter_rule('ar-refunds', followup_after => '0')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], followup_every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-refunds', followup_every => '1 hour')$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], choices => ARRAY['A', 'a'])$$,
     $$SELECT herald.alter_rule('ar-refunds', choices => ARRAY['A', 'a'])$$),
    ($$SELECT herald.on_change('ar-x', 'ar_orders', ARRAY['ar-a'], choices => '{}')$$,
     $$SELECT herald.alter_rule('ar-refunds', choices => '{}')$$),
    ($$SELECT herald.on_change(E'ar\nx', 'ar_orders', ARRAY['ar-a'])$$,
     $$SELECT herald.alter_rule('ar-refunds', new_name => E'ar\nx')$$)
  ) AS t(d, a);
-- only the parameters a rule's kind takes
SELECT test.error_of($$SELECT herald.alter_rule('ar-refunds', threshold => 5)$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-refunds', reset => '{metric}')$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-refunds', reset => '{on_table}')$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-refunds', reset => '{condition}', condition => 'true')$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-nope', condition => 'true')$$);
SELECT herald.alter_rule('ar-refunds', condition => 'OLD.amount > 5', channels => ARRAY['ar-a', 'ar-b'],
                         new_name => 'ar-refunds');
SELECT count(*) AS changes FROM herald.rule_changes WHERE rule = 'ar-refunds';

-------------------------------------------------------------------------------
-- Privileges: another author cannot alter; herald_admin can, checked with
-- the owner's rights.
-------------------------------------------------------------------------------
RESET ROLE;
SET ROLE herald_ar_bob;
SELECT test.error_of($$SELECT herald.alter_rule('ar-refunds', condition => 'true')$$);
SELECT count(*) FROM herald.rule_changes WHERE rule = 'ar-refunds';
RESET ROLE;
SET ROLE herald_ar_admin;
-- the administrator may read ar_secret, the owner may not
SELECT test.error_of($$SELECT herald.alter_rule('ar-refunds', on_table => 'ar_secret', operations => '{INSERT}')$$);
SELECT herald.alter_rule('ar-refunds', condition => 'OLD.amount > 50');
RESET ROLE;
SELECT owner, condition FROM herald.rule_defs WHERE name = 'ar-refunds';
SET ROLE herald_ar_alice;
SELECT changed_by, changes FROM herald.rule_changes WHERE rule = 'ar-refunds' ORDER BY id DESC LIMIT 1;
RESET ROLE;

-------------------------------------------------------------------------------
-- A threshold rule: a firing instance stays firing while the new threshold
-- is crossed, and resolves once, saying why, when it is not.
-------------------------------------------------------------------------------
SET ROLE herald_ar_alice;
SELECT herald.on_threshold('ar-level', 'SELECT v FROM ar_gauge', '>', 50, ARRAY['ar-a'],
                           watch => ARRAY['ar_gauge'::regclass]);
RESET ROLE;
UPDATE ar_gauge SET v = 60;
SELECT herald.flush();
SET ROLE herald_ar_alice;
SELECT name, state, value, level, threshold FROM herald.rules WHERE name = 'ar-level';
SELECT herald.alter_rule('ar-level', threshold => 55);
RESET ROLE;
SELECT test.wait_until($$SELECT test.ar_evaluated('ar-level')$$) AS evaluated;
SET ROLE herald_ar_alice;
SELECT name, state, value, level, threshold FROM herald.rules WHERE name = 'ar-level';
SELECT herald.alter_rule('ar-level', threshold => 70, warning_threshold => 65);
RESET ROLE;
SELECT test.wait_until($$SELECT test.ar_evaluated('ar-level')$$) AS evaluated;
SET ROLE herald_ar_alice;
SELECT name, state, value, level, threshold, warning_threshold FROM herald.rules WHERE name = 'ar-level';
SELECT type, payload ->> 'reason' AS reason, payload ->> 'threshold' AS threshold
  FROM herald.events WHERE rule = 'ar-level' ORDER BY id;
-- the changes in the story of the episode, and in the change log
SELECT kind, detail FROM herald.timeline
 WHERE event_id = (SELECT min(id) FROM herald.events WHERE rule = 'ar-level')
   AND kind IN ('event', 'rule.changed')
 ORDER BY at, kind;
SELECT changed_by, changes FROM herald.rule_changes WHERE rule = 'ar-level' ORDER BY id;
-- it fires again, at the new threshold
RESET ROLE;
UPDATE ar_gauge SET v = 80;
SELECT herald.flush();
SET ROLE herald_ar_alice;
SELECT type, payload ->> 'reason' AS reason, payload ->> 'level' AS level
  FROM herald.events WHERE rule = 'ar-level' ORDER BY id;

-- every other parameter of a threshold rule
SELECT herald.on_threshold('ar-params', 'SELECT v FROM ar_gauge2', '>', 10, ARRAY['ar-a'],
                           watch => ARRAY['ar_gauge2'::regclass]);
SELECT herald.alter_rule('ar-params', metric => 'SELECT ''k'', v FROM ar_gauge2', op => '<',
                         threshold => -10, warning_threshold => -5, recover_threshold => 0,
                         watch => ARRAY['ar_gauge'::regclass], every => '1 hour',
                         message => '{{key}} at {{value}}', pending_for => '1 minute',
                         repeat_every => '1 hour', min_interval => '1 second', no_data => 'keep',
                         query_timeout => '1 second', followup_after => '1 hour',
                         followup_every => '1 day', choices => ARRAY['Look'],
                         announce_decisions => false);
SELECT herald.alter_rule('ar-params', channels => ARRAY['ar-a', 'ar-mail'], meeting => '30 minutes');
RESET ROLE;
SELECT name, metric, grouped, op, threshold, warning_threshold, recover_threshold, watch, every,
       message, pending_for, repeat_every, min_interval, no_data, query_timeout, followup_after,
       followup_every, meeting, choices, announce_decisions
  FROM herald.rule_defs WHERE name = 'ar-params';
SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relname IN ('ar_gauge', 'ar_gauge2') AND t.tgname LIKE 'herald%' ORDER BY 1, 2;
SET ROLE herald_ar_alice;
SELECT herald.alter_rule('ar-params', reset => '{watch,warning_threshold,recover_threshold,message,pending_for,repeat_every,min_interval,no_data,query_timeout,followup_every,followup_after,meeting,choices,announce_decisions}');
RESET ROLE;
SELECT name, watch, every, warning_threshold, recover_threshold, message, pending_for,
       repeat_every, min_interval, no_data, query_timeout, followup_after, followup_every,
       meeting, choices, announce_decisions
  FROM herald.rule_defs WHERE name = 'ar-params';
SET ROLE herald_ar_alice;

-- validation, as at declaration
SELECT test.error_of(d) AS declared, test.error_of(a) AS altered
  FROM (VALUES
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '=>', 1, ARRAY['ar-a'], every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-params', op => '=>')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 'NaN', ARRAY['ar-a'], every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-params', threshold => 'NaN')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '<', -10, ARRAY['ar-a'], every => '1 hour', warning_threshold => -20)$$,
     $$SELECT herald.alter_rule('ar-params', warning_threshold => -20)$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '<', -10, ARRAY['ar-a'], every => '1 hour', recover_threshold => -20)$$,
     $$SELECT herald.alter_rule('ar-params', recover_threshold => -20)$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '=', 1, ARRAY['ar-a'], every => '1 hour', warning_threshold => 2)$$,
     $$SELECT herald.alter_rule('ar-params', op => '=', warning_threshold => 2)$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_secret', '>', 1, ARRAY['ar-a'], every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-params', metric => 'SELECT v FROM ar_secret')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT 1; SELECT 2', '>', 1, ARRAY['ar-a'], every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-params', metric => 'SELECT 1; SELECT 2')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT ''a''', '>', 1, ARRAY['ar-a'], every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-params', metric => 'SELECT ''a''')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], watch => ARRAY['ar_secret'::regclass])$$,
     $$SELECT herald.alter_rule('ar-params', watch => ARRAY['ar_secret'::regclass])$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '0.5 seconds')$$,
     $$SELECT herald.alter_rule('ar-params', every => '0.5 seconds')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', pending_for => '31 days')$$,
     $$SELECT herald.alter_rule('ar-params', pending_for => '31 days')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', repeat_every => '0')$$,
     $$SELECT herald.alter_rule('ar-params', repeat_every => '0')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', min_interval => '2 days')$$,
     $$SELECT herald.alter_rule('ar-params', min_interval => '2 days')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', no_data => 'panic')$$,
     $$SELECT herald.alter_rule('ar-params', no_data => 'panic')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', query_timeout => '2 hours')$$,
     $$SELECT herald.alter_rule('ar-params', query_timeout => '2 hours')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', meeting => '30 minutes')$$,
     $$SELECT herald.alter_rule('ar-params', channels => ARRAY['ar-a'], meeting => '30 minutes')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', message => '{{new.id}}')$$,
     $$SELECT herald.alter_rule('ar-params', message => '{{new.id}}')$$),
    ($$SELECT herald.on_threshold('ar-x', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour', choices => ARRAY[' x'])$$,
     $$SELECT herald.alter_rule('ar-params', choices => ARRAY[' x'])$$),
    ($$SELECT herald.on_threshold('ar-level', 'SELECT v FROM ar_gauge', '>', 1, ARRAY['ar-a'], every => '1 hour')$$,
     $$SELECT herald.alter_rule('ar-params', new_name => 'ar-level')$$)
  ) AS t(d, a);
SELECT test.error_of($$SELECT herald.alter_rule('ar-params', reset => '{every}')$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-params', reset => '{threshold}')$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-params', condition => 'true')$$);
SELECT test.error_of($$SELECT herald.alter_rule('ar-params', reset => '{nope}')$$);
RESET ROLE;
SET ROLE herald_ar_bob;
SELECT test.error_of($$SELECT herald.alter_rule('ar-params', threshold => 1)$$);
RESET ROLE;
SET ROLE herald_ar_admin;
-- checked with alice's rights: she may not read ar_secret
SELECT test.error_of($$SELECT herald.alter_rule('ar-params', metric => 'SELECT v FROM ar_secret')$$);
RESET ROLE;
SELECT metric, op, threshold FROM herald.rule_defs WHERE name = 'ar-params';

-- a rule whose table was dropped is disabled for good: not altered either
CREATE TABLE ar_gone (v numeric);
GRANT SELECT ON ar_gone TO herald_ar_alice;
SET ROLE herald_ar_alice;
SELECT herald.on_change('ar-gone', 'ar_gone', ARRAY['ar-a']);
RESET ROLE;
DROP TABLE ar_gone;
SET ROLE herald_ar_alice;
SELECT test.error_of($$SELECT herald.alter_rule('ar-gone', condition => 'true')$$);
RESET ROLE;

-------------------------------------------------------------------------------
-- Dropping a rule keeps its history readable by its owner; its name is free.
-------------------------------------------------------------------------------
SET ROLE herald_ar_alice;
SELECT count(*) AS events, (SELECT count(*) FROM herald.evaluations WHERE rule = 'ar-level') > 0 AS evaluations,
       (SELECT count(*) FROM herald.rule_changes WHERE rule = 'ar-level') AS changes
  FROM herald.events WHERE rule = 'ar-level';
SELECT herald.drop_rule('ar-level');
SELECT count(*) AS events, (SELECT count(*) FROM herald.evaluations WHERE rule = 'ar-level') > 0 AS evaluations,
       (SELECT count(*) FROM herald.rule_changes WHERE rule = 'ar-level') AS changes,
       (SELECT count(*) FROM herald.timeline t JOIN herald.events e ON e.id = t.event_id
         WHERE e.rule = 'ar-level' AND t.kind = 'rule.changed') AS timeline_changes,
       (SELECT count(*) FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
         WHERE e.rule = 'ar-level') > 0 AS deliveries
  FROM herald.events WHERE rule = 'ar-level';
SELECT count(*) AS in_rules FROM herald.rules WHERE name = 'ar-level';
SELECT test.error_of($$SELECT herald.alter_rule('ar-level', threshold => 1)$$);
RESET ROLE;
-- another author sees none of it
SET ROLE herald_ar_bob;
SELECT count(*) FROM herald.events WHERE rule = 'ar-level';
SELECT count(*) FROM herald.rule_changes WHERE rule = 'ar-level';
RESET ROLE;
SELECT name, kind, owner, dropped_by FROM herald.dropped_rules WHERE name = 'ar-level';
SELECT count(*) AS instances FROM herald.rule_instances i
 WHERE NOT EXISTS (SELECT 1 FROM herald.rule_defs r WHERE r.id = i.rule_id);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ar_gauge'::regclass AND tgname LIKE 'herald%' ORDER BY 1;
-- declared again under the same name: a new rule, with a new id
SET ROLE herald_ar_alice;
SELECT herald.on_threshold('ar-level', 'SELECT v FROM ar_gauge', '>', 1000, ARRAY['ar-a'],
                           watch => ARRAY['ar_gauge'::regclass]);
RESET ROLE;
SELECT (SELECT id FROM herald.rule_defs WHERE name = 'ar-level')
       > (SELECT id FROM herald.dropped_rules WHERE name = 'ar-level') AS new_id;

-- clean up
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'ar-%' ORDER BY name;
SELECT herald.flush();
SET client_min_messages = warning;
SELECT herald.drop_channel(name) FROM herald.channel_defs WHERE name LIKE 'ar-%' ORDER BY name;
RESET client_min_messages;
DROP TABLE ar_orders, ar_refunds, ar_gauge, ar_gauge2, ar_secret;
DROP OWNED BY herald_ar_admin, herald_ar_alice, herald_ar_bob;
DROP ROLE herald_ar_admin, herald_ar_alice, herald_ar_bob;
