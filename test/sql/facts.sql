-- Facts: what explains an event.  A threshold event shows its value, the
-- threshold it crossed named for what it is, its level, key, since when and
-- its trend (with 3 values or more); a row event its columns in table
-- order, or the rule's facts => in theirs.  No format says the title twice.
-- (test.mask and test.body come from formats.)
\set SHOW_CONTEXT never

SELECT herald.create_channel('facts-chat', 'google_chat', test.url('/facts/chat'),
                             rate_limit => 1000);
SELECT herald.create_channel('facts-slack', 'slack', test.url('/facts/slack'),
                             rate_limit => 1000);
SELECT herald.create_channel('facts-teams', 'teams', test.url('/facts/teams'));
SELECT herald.create_channel('facts-mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['ops@example.com'],
                             sender => 'herald@example.com');

-- What Google Chat shows of each message of a rule: title, message, facts.
CREATE FUNCTION test.chat(rule text) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT test.mask((r ->> 'body')::jsonb ->> 'text')
      FROM test.received('/facts/chat') r
     WHERE (r ->> 'body')::jsonb ->> 'text' LIKE '%rule ' || rule || ' ·%'
     ORDER BY (r ->> 'n')::int
$$;

-------------------------------------------------------------------------------
-- A grouped rule with a warning level and a recover threshold: fired at
-- warning level, escalated, still firing above the recover threshold,
-- resolved at or below it.  Default messages.
-------------------------------------------------------------------------------
CREATE TABLE baskets (region text, abandoned int);
INSERT INTO baskets VALUES ('paris', 10);
SELECT herald.on_threshold('abandoned', 'SELECT region, abandoned FROM baskets', '>', 50,
                           ARRAY['facts-chat', 'facts-slack', 'facts-teams', 'facts-mail'],
                           watch => ARRAY['baskets'::regclass],
                           warning_threshold => 30, recover_threshold => 20);
SELECT herald.flush();
CALL test.observe('UPDATE baskets SET abandoned = %s', 35, 60, 25, 15);

-- the payloads: level, since and crossed beside the fields they always had
SELECT type, test.mask(payload::text) AS payload
  FROM herald.events WHERE rule = 'abandoned' ORDER BY id;
SELECT * FROM test.chat('abandoned');

-- Slack: the notification text says the title once; the section under the
-- header adds what the message says beyond the title; the facts as fields
SELECT test.mask(b ->> 'text') AS fallback,
       b -> 'blocks' -> 0 -> 'text' ->> 'text' AS header,
       test.mask(b -> 'blocks' -> 1 -> 'text' ->> 'text') AS section,
       (SELECT string_agg(test.mask(replace(f ->> 'text', E'\n', ' ')), ' | ')
          FROM jsonb_array_elements(b -> 'blocks' -> 2 -> 'fields') f) AS fields
  FROM (SELECT (r ->> 'body')::jsonb AS b, (r ->> 'n')::int AS n
          FROM test.received('/facts/slack') r) s
 WHERE b::text LIKE '%abandoned%' ORDER BY n;

-- Teams: the card's title, then the rest of the message, then the facts
SELECT (SELECT test.mask(string_agg(blk ->> 'text', ' / '))
          FROM jsonb_array_elements(b #> '{attachments,0,content,body}') blk
         WHERE blk ->> 'type' = 'TextBlock' AND NOT (blk ? 'isSubtle')) AS card_text,
       (SELECT string_agg((f ->> 'title') || ': ' || test.mask(f ->> 'value'), ', ')
          FROM jsonb_array_elements(b #> '{attachments,0,content,body}') blk,
               jsonb_array_elements(blk -> 'facts') f
         WHERE blk ->> 'type' = 'FactSet') AS facts
  FROM (SELECT (r ->> 'body')::jsonb AS b, (r ->> 'n')::int AS n
          FROM test.received('/facts/teams') r) s
 WHERE b::text LIKE '%abandoned%' ORDER BY n;

-- email: the plain part opens with the message alone, the HTML part with
-- the title and then the rest (the escalation's)
SELECT test.mask(split_part(split_part(m ->> 'data', E'quoted-printable\r\n\r\n', 2),
                            '--herald-', 1)) AS plain,
       substring(test.mask(m ->> 'data') FROM '<h2>.*</table>') AS html
  FROM test.mails() m WHERE m ->> 'data' LIKE '%escalated%';

-------------------------------------------------------------------------------
-- The sparkline: none with 1 value (no Trend fact, {{sparkline}} empty),
-- drawn with 5.
-------------------------------------------------------------------------------
CREATE TABLE backlog (n int);
INSERT INTO backlog VALUES (100);
SELECT herald.on_threshold('backlog', 'SELECT n FROM backlog', '>', 50, ARRAY['facts-chat'],
                           watch => ARRAY['backlog'::regclass],
                           message => '{{value}} waiting {{sparkline}}');
SELECT herald.flush();
CALL test.observe('UPDATE backlog SET n = %s', 60, 70, 80, 10);
SELECT type, jsonb_array_length(payload -> 'recent') AS values
  FROM herald.events WHERE rule = 'backlog' ORDER BY id;
SELECT * FROM test.chat('backlog');

-------------------------------------------------------------------------------
-- Row events: columns in table order, at most 6 by default; facts => picks
-- them, in its order.
-------------------------------------------------------------------------------
CREATE TABLE orders9 (id int, customer text, region text, amount numeric, currency text,
                      status text, created_by text, note text, priority int);
SELECT herald.on_change('order-default', 'orders9', ARRAY['facts-chat'], ARRAY['INSERT']);
SELECT herald.on_change('order-chosen', 'orders9', ARRAY['facts-chat'], ARRAY['INSERT'],
                        message => 'Order {{new.id}} from {{new.customer}}',
                        facts => ARRAY['priority', 'amount', 'customer']);
SELECT name, facts FROM herald.rules WHERE name LIKE 'order-%' ORDER BY name;
INSERT INTO orders9 VALUES (1, 'Acme', 'EU', 12500, 'EUR', 'new', 'ann', 'rush', 1);
SELECT herald.flush();
SELECT * FROM test.chat('order-default');
SELECT * FROM test.chat('order-chosen');

-- changed in place, then back to the table's first columns
SELECT herald.alter_rule('order-chosen', facts => ARRAY['note', 'id']);
INSERT INTO orders9 VALUES (2, 'Globex', 'US', 300, 'USD', 'new', 'bob', 'call first', 2);
SELECT herald.flush();
SELECT herald.alter_rule('order-chosen', reset => '{facts}');
SELECT name, facts FROM herald.rules WHERE name = 'order-chosen';
SELECT changes FROM herald.rule_changes WHERE rule = 'order-chosen' ORDER BY id;
-- a column renamed since: shown under its new name by default, left out of
-- a rule's facts that named it
SELECT herald.alter_rule('order-default', facts => ARRAY['status', 'id']);
ALTER TABLE orders9 RENAME COLUMN status TO state;
INSERT INTO orders9 VALUES (3, 'Initech', 'EU', 9, 'EUR', 'paid', 'cy', NULL, 3);
SELECT herald.flush();
SELECT * FROM test.chat('order-chosen');
SELECT * FROM test.chat('order-default') OFFSET 2;

-------------------------------------------------------------------------------
-- Declaration errors: nothing is stored.
-------------------------------------------------------------------------------
\set VERBOSITY default
SELECT herald.on_change('bad-facts', 'orders9', ARRAY['facts-chat'], facts => ARRAY['nope']);
SELECT herald.on_change('bad-facts', 'orders9', ARRAY['facts-chat'], facts => '{}');
SELECT herald.on_change('bad-facts', 'orders9', ARRAY['facts-chat'],
                        facts => ARRAY['id', 'customer', 'region', 'amount', 'currency',
                                       'state', 'created_by', 'note', 'priority']);
SELECT herald.on_change('bad-facts', 'orders9', ARRAY['facts-chat'], facts => ARRAY['id', NULL]);
SELECT herald.on_change('bad-facts', 'orders9', ARRAY['facts-chat'], facts => ARRAY['id', 'id']);
SELECT herald.alter_rule('order-chosen', facts => ARRAY['status']);
SELECT herald.alter_rule('abandoned', facts => ARRAY['region']);
\set VERBOSITY terse
SELECT count(*) AS stored FROM herald.rules WHERE name = 'bad-facts';
SELECT facts FROM herald.rules WHERE name = 'order-chosen';

-- clean up
SELECT herald.drop_rule(name)
  FROM (SELECT DISTINCT name FROM herald.rules
         WHERE name IN ('abandoned', 'backlog', 'order-default', 'order-chosen')) r;
SELECT herald.drop_channel(name) FROM herald.channels WHERE name LIKE 'facts-%';
DROP TABLE baskets, backlog, orders9;
DROP FUNCTION test.chat(text);
