-- Capture: committed row changes become events and deliveries, in the
-- writer's transaction, and only when it commits.
\set SHOW_CONTEXT never
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
SELECT herald.create_channel('capture-a', 'webhook', test.url('/capture/a'));
SELECT herald.create_channel('capture-b', 'webhook', test.url('/capture/b'));
SELECT herald.on_change('accounts-all', 'accounts', ARRAY['capture-a', 'capture-b']);
SELECT herald.on_change('big-balance', 'accounts', ARRAY['capture-a'],
                        ARRAY['INSERT', 'UPDATE'], condition => 'NEW.balance >= 1000');

-- a commit creates one event per matching rule and row, one delivery per channel
INSERT INTO accounts VALUES (1, 'ann', 10);
SELECT type, rule, payload FROM herald.events ORDER BY id;
SELECT e.rule, d.channel, d.status IN ('pending', 'delivered') AS queued
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 ORDER BY d.id;

-- a rolled-back transaction leaves nothing
BEGIN;
INSERT INTO accounts VALUES (2, 'bob', 5000);
SELECT count(*) AS events_inside FROM herald.events WHERE payload -> 'new' ->> 'owner' = 'bob';
ROLLBACK;

-- a failed statement leaves nothing
INSERT INTO accounts VALUES (3, 'cat', 5000), (1, 'dup', 1);

-- a rolled-back savepoint leaves nothing, the rest of the transaction counts
BEGIN;
SAVEPOINT s;
INSERT INTO accounts VALUES (4, 'dan', 5000);
ROLLBACK TO s;
INSERT INTO accounts VALUES (5, 'eve', 2000);
COMMIT;
SELECT type, rule, payload -> 'new' ->> 'owner' AS owner FROM herald.events ORDER BY id;

-- UPDATE carries old and new rows, DELETE the old row
UPDATE accounts SET balance = balance * 200 WHERE id = 1;
DELETE FROM accounts WHERE id = 5;
SELECT type, rule, payload FROM herald.events WHERE type <> 'row.inserted' ORDER BY id;

-- a multi-row statement, updating several rows: pairs stay matched
INSERT INTO accounts VALUES (10, 'p', 1), (11, 'q', 2), (12, 'r', 3);
UPDATE accounts SET balance = balance * 1000 WHERE id IN (10, 11, 12);
SELECT rule, payload -> 'old' ->> 'owner' AS old_owner, payload -> 'new' ->> 'owner' AS new_owner,
       payload -> 'old' ->> 'balance' AS old_balance, payload -> 'new' ->> 'balance' AS new_balance
  FROM herald.events
 WHERE type = 'row.updated' AND payload -> 'new' ->> 'owner' IN ('p', 'q', 'r')
 ORDER BY rule, new_owner;

-- a disabled rule is silent
SELECT herald.disable_rule('big-balance');
INSERT INTO accounts VALUES (6, 'fay', 9999);
SELECT rule FROM herald.events WHERE payload -> 'new' ->> 'owner' = 'fay';
SELECT herald.enable_rule('big-balance');

-- a condition over OLD and NEW
SELECT herald.on_change('balance-drop', 'accounts', ARRAY['capture-a'], ARRAY['UPDATE'],
                        condition => 'OLD.balance > NEW.balance');
UPDATE accounts SET balance = balance - 1 WHERE id = 6;
UPDATE accounts SET balance = balance + 1 WHERE id = 1;
SELECT rule, payload -> 'new' ->> 'owner' AS owner FROM herald.events
 WHERE type = 'row.updated' AND payload -> 'new' ->> 'owner' IN ('fay', 'ann')
 ORDER BY id DESC LIMIT 4;

-- a condition that fails at run time does not break the write; the rule's
-- channels are told with a rule.error event
SELECT herald.on_change('ratio', 'accounts', ARRAY['capture-a'], ARRAY['INSERT'],
                        condition => '100 / NEW.balance > 1');
INSERT INTO accounts VALUES (7, 'gil', 0);
SELECT count(*) AS inserted FROM accounts WHERE id = 7;
SELECT type, rule, payload FROM herald.events WHERE rule = 'ratio';
SELECT herald.drop_rule('ratio');

-- the writer needs no privilege on pg_herald's tables, and gains none
CREATE ROLE herald_test_writer;
GRANT INSERT, SELECT ON accounts TO herald_test_writer;
SET ROLE herald_test_writer;
INSERT INTO accounts VALUES (8, 'hal', 1);
SELECT count(*) FROM herald.events;
RESET ROLE;
SELECT rule FROM herald.events WHERE payload -> 'new' ->> 'owner' = 'hal';
REVOKE ALL ON accounts FROM herald_test_writer;
DROP ROLE herald_test_writer;

-- a writer's search_path cannot slip functions into pg_herald's statements
CREATE ROLE herald_test_mallory;
CREATE SCHEMA mallory AUTHORIZATION herald_test_mallory;
GRANT INSERT ON accounts TO herald_test_mallory;
SET ROLE herald_test_mallory;
CREATE TABLE mallory.calls (who name);
CREATE FUNCTION mallory.unnest(jsonb[]) RETURNS SETOF jsonb LANGUAGE sql
    AS 'INSERT INTO mallory.calls SELECT current_user; SELECT ''{}''::jsonb';
GRANT ALL ON mallory.calls TO PUBLIC;
SET search_path = mallory, public;
INSERT INTO accounts VALUES (9, 'ivy', 1);
RESET search_path;
SELECT count(*) AS hijacked_calls FROM mallory.calls;
RESET ROLE;
SELECT rule FROM herald.events WHERE payload -> 'new' ->> 'owner' = 'ivy';
DROP SCHEMA mallory CASCADE;
REVOKE ALL ON accounts FROM herald_test_mallory;
DROP ROLE herald_test_mallory;

-- a condition cannot change the writer's settings
SELECT herald.on_change('meddler', 'accounts', ARRAY['capture-a'], ARRAY['INSERT'],
                        condition => 'set_config(''work_mem'', ''1234kB'', false) IS NOT NULL');
SHOW work_mem;
INSERT INTO accounts VALUES (13, 'jon', 1);
SHOW work_mem;
SELECT rule FROM herald.events WHERE rule = 'meddler';
SELECT herald.drop_rule('meddler');

-- 10,000 rows in one statement: one event per row and rule, set-based
CREATE TABLE clicks (id int, page text);
SELECT herald.create_channel('capture-bulk', 'webhook', test.url('/capture/bulk'));
SELECT herald.on_change('clicks', 'clicks', ARRAY['capture-bulk'], ARRAY['INSERT'],
                        condition => 'NEW.id % 2 = 0');
-- (the condition budget is not the point here: a loaded machine may need more)
SET herald.condition_timeout = '10s';
INSERT INTO clicks SELECT g, 'page' || g FROM generate_series(1, 10000) g;
RESET herald.condition_timeout;
SELECT count(*) AS events, count(DISTINCT payload -> 'new' ->> 'id') AS distinct_rows,
       bool_and((payload -> 'new' ->> 'id')::int % 2 = 0) AS all_even
  FROM herald.events WHERE rule = 'clicks';
SELECT count(*) AS deliveries FROM herald.deliveries WHERE channel = 'capture-bulk';
SELECT herald.drop_rule('clicks');
SET client_min_messages = warning;
SELECT herald.drop_channel('capture-bulk');
RESET client_min_messages;
DROP TABLE clicks;

-- everything queued reaches the receiver
SELECT herald.flush('60 seconds');
SELECT channel, status, count(*) FROM herald.deliveries GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(DISTINCT (r ->> 'body')::jsonb -> 'data' ->> 'event_id') AS events_received
  FROM test.received('/capture/a') AS r;
SELECT count(*) AS events_for_a FROM herald.deliveries WHERE channel = 'capture-a';
DROP TABLE accounts;
