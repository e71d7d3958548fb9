-- Row rules: declaration, validation, triggers, enable/disable, drop.
\set SHOW_CONTEXT never
CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric, note text);
SELECT herald.create_channel('rules-hook', 'webhook', 'http://127.0.0.1:9/rules');

SELECT herald.on_change(name => 'big-order', on_table => 'orders',
                        channels => ARRAY['rules-hook'], operations => ARRAY['insert', 'UPDATE'],
                        condition => 'NEW.amount > 1000',
                        message => 'Order {{new.id}}: {{ new.amount }} EUR ({{old.amount}} before)');
SELECT name, kind, state, enabled, on_table, operations, condition, channels
  FROM herald.rules;

-- one statement trigger per operation, with transition tables
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
 WHERE tgrelid = 'orders'::regclass ORDER BY tgname;

-- a second rule on DELETE adds the DELETE trigger; dropping it removes it
SELECT herald.on_change('gone', 'orders', ARRAY['rules-hook'], ARRAY['DELETE']);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname;
SELECT herald.drop_rule('gone');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname;

-- disabling the last rule removes the triggers, enabling brings them back
SELECT herald.disable_rule('big-order');
SELECT state FROM herald.rules WHERE name = 'big-order';
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass;
SELECT herald.enable_rule('big-order');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass;

-- validation errors: nothing is stored
\set VERBOSITY default
SELECT herald.on_change('big-order', 'orders', ARRAY['rules-hook']);
SELECT herald.on_change('r', 'no_such_table', ARRAY['rules-hook']);
CREATE VIEW orders_view AS SELECT * FROM orders;
SELECT herald.on_change('r', 'orders_view', ARRAY['rules-hook']);
SELECT herald.on_change('r', 'herald.event_log', ARRAY['rules-hook']);
SELECT herald.on_change('r', 'orders', ARRAY['no-such-channel']);
SELECT herald.on_change('r', 'orders', ARRAY[]::text[]);
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], ARRAY['TRUNCATE']);
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], ARRAY[]::text[]);
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], condition => 'NEW.amount >');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], condition => 'NEW.amout > 10');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], condition => 'NEW.amount + 1');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], condition => 'true; DROP TABLE orders');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], condition => '1) FROM orders WHERE (true');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], condition => 'count(*) > 1');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], message => 'Order {{new.idd}}');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], message => 'Hello {{customer}}');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], message => 'Order {{new.id');
SELECT herald.on_change('r', 'orders', ARRAY['rules-hook'], message => 'Order {{ }}');
SELECT herald.on_change('', 'orders', ARRAY['rules-hook']);
SELECT count(*) AS rules FROM herald.rules;

-- a channel in use cannot be dropped
SELECT herald.drop_channel('rules-hook');

-- unknown rules
SELECT herald.drop_rule('nope');
SELECT herald.enable_rule('nope');
SELECT herald.disable_rule('nope');

SELECT herald.drop_rule('big-order');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass;
SELECT herald.drop_channel('rules-hook');
DROP VIEW orders_view;
DROP TABLE orders;
