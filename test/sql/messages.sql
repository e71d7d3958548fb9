-- Messages per event type, formatting filters and time zones: what the
-- receiver gets for each type of both kinds, every filter with its edge
-- values, every declaration error, hostile templates, a channel's time
-- zone against herald.timezone.
\set SHOW_CONTEXT never

SELECT herald.create_channel('msg-hook', 'webhook', test.url('/messages/hook'));
SELECT herald.create_channel('msg-paris', 'webhook', test.url('/messages/paris'),
                             timezone => 'Europe/Paris');
SELECT herald.create_channel('msg-slack', 'slack', test.url('/messages/slack'), rate_limit => 1000);

-- The messages a path received, n their event's id (deliveries arrive in
-- any order), event ids masked in the text.
CREATE FUNCTION test.messages(prefix text) RETURNS TABLE (n bigint, type text, message text)
LANGUAGE sql AS $$
    SELECT ((r ->> 'body')::jsonb -> 'data' ->> 'event_id')::bigint, (r ->> 'body')::jsonb ->> 'type',
           regexp_replace((r ->> 'body')::jsonb -> 'data' ->> 'message',
                          '(event |acknowledge\(|decide\()\d+', '\1N', 'g')
      FROM test.received(prefix) r
$$;

-------------------------------------------------------------------------------
-- Row rules: a message per type, else message, else the type's default.
-------------------------------------------------------------------------------
CREATE TABLE msg_orders (id int PRIMARY KEY, customer text, amount numeric, ratio numeric,
                         note text, placed_at timestamptz, due date, code text);
SELECT herald.on_change('msg-order', 'msg_orders', ARRAY['msg-hook'],
                        message => 'order {{new.id}} changed',
                        messages => $${"row.inserted": "New order {{new.id}} from {{new.customer | upper}}: {{new.amount | number(2)}} EUR",
                                       "row.deleted": "Order {{old.id}} deleted ({{old.note | default('no note')}})"}$$);
SELECT name, message, messages FROM herald.rules WHERE name = 'msg-order';
INSERT INTO msg_orders (id, customer, amount) VALUES (1, 'Acme', 48200);
UPDATE msg_orders SET amount = 12 WHERE id = 1;
DELETE FROM msg_orders WHERE id = 1;
SELECT herald.flush();
SELECT type, message FROM test.messages('/messages/hook') ORDER BY n;

-- reset => '{messages}': message again for every type; reset message too:
-- the defaults
SELECT herald.alter_rule('msg-order', reset => '{messages}');
SELECT name, message, messages FROM herald.rules WHERE name = 'msg-order';
INSERT INTO msg_orders (id, customer, amount) VALUES (2, 'Acme', 1);
-- (a delivery renders with the rule as it is then: delivered first)
SELECT herald.flush();
SELECT herald.alter_rule('msg-order', reset => '{message}',
                         messages => '{"row.updated": "Order {{new.id}}: {{old.amount}} -> {{new.amount}}"}');
UPDATE msg_orders SET amount = 2 WHERE id = 2;
DELETE FROM msg_orders WHERE id = 2;
SELECT herald.flush();
SELECT type, message FROM test.messages('/messages/hook') ORDER BY n OFFSET 3;
-- each change recorded, old and new
SELECT changes -> 'messages' AS messages, changes -> 'message' AS message
  FROM herald.rule_changes WHERE rule = 'msg-order' ORDER BY id;
SELECT herald.drop_rule('msg-order');

-------------------------------------------------------------------------------
-- Every filter, with edge values; the same row to a channel in UTC
-- (herald.timezone) and to one in Europe/Paris.
-------------------------------------------------------------------------------
SELECT herald.on_change('msg-filters', 'msg_orders', ARRAY['msg-hook', 'msg-paris'], ARRAY['INSERT'],
    message => $$#{{new.id}} amount={{new.amount | number(2)}} round={{new.amount | number}} pct={{new.ratio | percent(1)}} pct0={{new.ratio | percent}} at={{new.placed_at | time}} fmt={{new.placed_at | time('DD/MM/YYYY HH24:MI:SS TZ')}} due={{new.due | time('DD Mon YYYY')}} due2={{new.due | time}} note={{new.note | truncate(4)}} code={{new.code | lower}}/{{new.code | upper}} missing={{new.note | default('none')}} old={{old.note | default('n/a')}} chain={{new.customer | truncate(3) | upper}}$$);
INSERT INTO msg_orders VALUES
    (10, 'Acme', 48200, 0.153, 'Café au lait', '2026-12-01 18:14:29.891293+00', '2026-12-24', 'MiXeD'),
    (11, 'Bo', -1234567.891, -0.5, 'éééé', '2026-07-01 00:00:00+00', NULL, ''),
    (12, NULL, 0, 0, 'ééééé', NULL, NULL, NULL),
    (13, 'huge', 123456789012345678901234567890.125, 1, '', '2026-12-31 23:59:59.999999+00', '0001-01-01', 'x'),
    (14, 'nan', 'NaN', 'NaN', 'abcd', 'infinity', 'infinity', 'y'),
    (15, 'inf', 'Infinity', '-Infinity', 'abcde', '-infinity', NULL, 'z'),
    (16, 'half', 2.5, 0.00049, NULL, NULL, NULL, NULL),
    (17, 'tiny', 0.001, 1e-7, NULL, NULL, NULL, NULL),
    (18, 'neg', -0.004, -0.123456, NULL, NULL, NULL, NULL);
SELECT herald.flush();
-- (the rows of one statement arrive in any order)
SELECT message FROM test.messages('/messages/hook') WHERE message LIKE '#%' ORDER BY message;
SELECT message FROM test.messages('/messages/paris') WHERE message LIKE '#%' ORDER BY message;

-- A value a number filter cannot read renders unchanged, at delivery:
-- the column became text after the rule was declared.
ALTER TABLE msg_orders ALTER COLUMN amount TYPE text;
INSERT INTO msg_orders (id, amount, ratio) VALUES (20, 'a lot', 0.5), (21, '1e5000', 2),
    (22, repeat('9', 1001), 3), (23, ' 42 ', 4);
SELECT herald.flush();
SELECT left(message, 60) AS message, length(message) AS length
  FROM test.messages('/messages/hook') WHERE message LIKE '#2%' ORDER BY message;
DELETE FROM msg_orders;
ALTER TABLE msg_orders ALTER COLUMN amount TYPE numeric USING amount::numeric;
SELECT herald.drop_rule('msg-filters');

-- Formatted first, escaped for the kind afterwards: Slack's mrkdwn
-- escapes what upper and default produced.
SELECT herald.on_change('msg-escape', 'msg_orders', ARRAY['msg-slack'], ARRAY['INSERT'],
    message => $${{new.customer | upper}} {{new.note | default('<none> & "more"')}}$$);
INSERT INTO msg_orders (id, customer) VALUES (30, 'a<b>&c');
SELECT herald.flush();
SELECT (r ->> 'body')::jsonb ->> 'text' AS fallback, b -> 'text' ->> 'text' AS section
  FROM test.received('/messages/slack') r,
       jsonb_array_elements((r ->> 'body')::jsonb -> 'blocks') b
 WHERE b ->> 'type' = 'section' AND b -> 'text' ->> 'text' LIKE 'A&lt;%';
SELECT herald.drop_rule('msg-escape');
DELETE FROM msg_orders;

-------------------------------------------------------------------------------
-- Threshold rules: fired (warning), reminder, escalated, resolved, each with
-- its message; the resolution keeps its level and since; {{crossed}}.
-- Asia/Tokyo has no daylight saving time: its abbreviation is stable.
-------------------------------------------------------------------------------
SELECT herald.create_channel('msg-tokyo', 'webhook', test.url('/messages/tokyo'),
                             timezone => 'Asia/Tokyo');
INSERT INTO gauges VALUES ('msg', 0);
SELECT herald.on_threshold('msg-basket', $$SELECT v FROM gauges WHERE name = 'msg'$$, '>', 50,
    ARRAY['msg-hook', 'msg-tokyo'], watch => ARRAY['gauges'::regclass],
    warning_threshold => 30, recover_threshold => 20, repeat_every => '1 second',
    message => '{{rule}}: {{value}} (message)',
    messages => jsonb_build_object(
        'rule.fired', '[{{rule}}] fired: {{level | upper}} {{value | number(1)}} over {{crossed}} since {{since | time(''HH24:MI TZ'')}}',
        'rule.escalated', '[{{rule}}] escalated: {{level}} {{value | number(1)}} over {{crossed}}',
        'rule.reminder', '[{{rule}}] still {{level}}: {{value}} over {{crossed}}',
        'rule.resolved', '[{{rule}}] resolved: {{level}}: {{value}} (back under {{crossed}}, firing since {{since | time(''HH24:MI TZ'')}})'));
SELECT herald.flush();
CALL test.feed('msg', 35);
SELECT test.wait_until($$SELECT count(*) >= 1 FROM herald.events
                          WHERE rule = 'msg-basket' AND type = 'rule.reminder'$$);
CALL test.feed('msg', 60, 10);
SELECT herald.flush();
-- the first message of each type, in order, times masked
CREATE FUNCTION test.first_messages(prefix text) RETURNS TABLE (type text, message text)
LANGUAGE sql AS $$
    SELECT type, regexp_replace(message, '\d\d:\d\d', 'HH:MI', 'g')
      FROM (SELECT DISTINCT ON (m.type) m.type, m.message, m.n
              FROM test.messages(prefix) m
             WHERE m.message LIKE '[msg-basket]%'
             ORDER BY m.type, m.n) f
     ORDER BY n
$$;
SELECT * FROM test.first_messages('/messages/hook');
SELECT * FROM test.first_messages('/messages/tokyo');
-- the same instant, in UTC and in Tokyo (+09:00)
SELECT (SELECT substring(message from 'since (\d\d:\d\d) UTC') FROM test.messages('/messages/hook')
         WHERE type = 'rule.fired' AND message LIKE '[msg-basket]%')
       = to_char((SELECT (payload ->> 'since')::timestamptz FROM herald.events
                   WHERE rule = 'msg-basket' AND type = 'rule.fired') AT TIME ZONE 'UTC', 'HH24:MI')
       AS utc_since,
       (SELECT substring(message from 'since (\d\d:\d\d) JST') FROM test.messages('/messages/tokyo')
         WHERE type = 'rule.fired')
       = to_char((SELECT (payload ->> 'since')::timestamptz FROM herald.events
                   WHERE rule = 'msg-basket' AND type = 'rule.fired') AT TIME ZONE 'Asia/Tokyo', 'HH24:MI')
       AS tokyo_since;
SELECT type, payload ->> 'level' AS level, payload ->> 'crossed' AS crossed,
       payload ? 'since' AS has_since
  FROM herald.events WHERE rule = 'msg-basket' AND type <> 'rule.reminder' ORDER BY id;

-- the defaults of every type, with their placeholders filled in
-- (times and the sparkline, whose length depends on the reminders, masked)
SELECT herald.alter_rule('msg-basket', reset => '{message,messages}');
CALL test.feed('msg', 40);
SELECT test.wait_until($$SELECT count(*) >= 1 FROM herald.events
                          WHERE rule = 'msg-basket' AND type = 'rule.reminder'
                            AND id > (SELECT max(id) FROM herald.events
                                       WHERE rule = 'msg-basket' AND type = 'rule.fired')$$);
CALL test.feed('msg', 70, 25, 5);
SELECT herald.flush();
SELECT type, message FROM (
    SELECT DISTINCT ON (type) type, n,
           regexp_replace(regexp_replace(message, '\d{4}-\d\d-\d\d \d\d:\d\d', 'TIME', 'g'),
                          '[\u2581-\u2588]+', 'SPARKLINE', 'g') AS message
      FROM test.messages('/messages/hook')
     WHERE message LIKE 'msg-basket%'
     ORDER BY type, n) m
 ORDER BY n;
SELECT herald.drop_rule('msg-basket');

-- no data, with no_data => 'alert': the default says the value is missing
UPDATE gauges SET v = NULL WHERE name = 'msg';
SELECT herald.on_threshold('msg-nodata', $$SELECT v FROM gauges WHERE name = 'msg'$$, '>', 50,
    ARRAY['msg-hook'], watch => ARRAY['gauges'::regclass], no_data => 'alert');
SELECT herald.flush();
CALL test.set_null('msg');
SELECT message FROM test.messages('/messages/hook') WHERE message LIKE 'msg-nodata%' ORDER BY n;
SELECT herald.drop_rule('msg-nodata');

-------------------------------------------------------------------------------
-- herald.timezone: a channel without a zone follows it.  The setting
-- reaches the delivery worker at its next loop after the reload: probe
-- until a message shows the new zone.
-------------------------------------------------------------------------------
ALTER SYSTEM SET herald.timezone = 'Mars/Olympus_Mons';
SELECT test.error_of($$SET herald.timezone = 'UTC'$$);
SHOW herald.timezone;
CREATE TABLE msg_probe (id serial PRIMARY KEY, at timestamptz);
SELECT herald.on_change('msg-probe', 'msg_probe', ARRAY['msg-hook', 'msg-paris'], ARRAY['INSERT'],
                        message => 'probe {{new.at | time}}');
CREATE PROCEDURE test.await_zone(zone text)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        INSERT INTO msg_probe (at) VALUES ('2026-12-01 18:14:29+00');
        COMMIT;
        PERFORM herald.flush();
        IF (SELECT message FROM test.messages('/messages/hook')
             WHERE message LIKE 'probe%' ORDER BY n DESC LIMIT 1) LIKE '% ' || zone THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'the delivery worker did not take the new herald.timezone';
END
$$;
CALL test.await_zone('UTC');
ALTER SYSTEM SET herald.timezone = 'America/New_York';
SELECT pg_reload_conf();
CALL test.await_zone('EST');
SELECT DISTINCT message FROM test.messages('/messages/hook') WHERE message LIKE 'probe%' ORDER BY 1;
-- the Paris channel keeps its own zone
SELECT DISTINCT message FROM test.messages('/messages/paris') WHERE message LIKE 'probe%';
ALTER SYSTEM RESET herald.timezone;
SELECT pg_reload_conf();
CALL test.await_zone('UTC');
SELECT herald.drop_rule('msg-probe');
DROP TABLE msg_probe;

-- channels: declared, shown, changed, removed ('' goes back to herald.timezone)
SELECT name, timezone FROM herald.channels WHERE name LIKE 'msg-%' ORDER BY name;
SELECT herald.alter_channel('msg-hook', timezone => 'Asia/Kolkata');
SELECT herald.alter_channel('msg-paris', timezone => '');
SELECT name, timezone FROM herald.channels WHERE name IN ('msg-hook', 'msg-paris') ORDER BY name;
SELECT herald.alter_channel('msg-hook', timezone => '');
SELECT test.error_of($$SELECT herald.create_channel('msg-bad', 'webhook', 'https://example.com/x', timezone => 'Europe/Atlantis')$$);
SELECT test.error_of($$SELECT herald.alter_channel('msg-hook', timezone => 'not a zone')$$);
SELECT test.error_of($$SELECT herald.alter_channel('msg-hook', timezone => repeat('x', 5000))$$);

-------------------------------------------------------------------------------
-- Declaration errors: each refused with 22023 and nothing stored.
-------------------------------------------------------------------------------
-- The SQLSTATE, message, detail and hint of the error a statement raises.
CREATE FUNCTION test.full_error(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_detail text;
    v_hint text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    RETURN concat_ws(E'\n  ', SQLSTATE || ': ' || SQLERRM, 'DETAIL: ' || nullif(v_detail, ''),
                     'HINT: ' || nullif(v_hint, ''));
END
$$;
-- ... of a row rule's declaration with these messages and message
CREATE FUNCTION test.row_rule_error(messages jsonb, message text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT test.full_error(format('SELECT herald.on_change(%L, %L, ARRAY[%L], message => %L, messages => %L)',
                                  'msg-bad', 'msg_orders', 'msg-hook', message, messages))
$$;
-- messages
SELECT test.row_rule_error('"a string"');
SELECT test.row_rule_error('["row.inserted"]');
SELECT test.row_rule_error('{"row.created": "x"}');
SELECT test.row_rule_error('{"rule.fired": "x"}');
SELECT test.row_rule_error('{"row.inserted": 42}');
SELECT test.row_rule_error('{"row.inserted": null}');
SELECT test.row_rule_error('{"row.inserted": "{{value}}"}');
SELECT test.row_rule_error('{"row.deleted": "{{old.nope}}"}');
SELECT test.row_rule_error('{"row.updated": "{{new.id"}');
SELECT test.full_error($$SELECT herald.on_threshold('msg-bad', 'SELECT 1', '>', 1, ARRAY['msg-hook'], every => '1 hour',
                                                 messages => '{"row.inserted": "x"}')$$);
SELECT test.full_error($$SELECT herald.on_threshold('msg-bad', 'SELECT 1', '>', 1, ARRAY['msg-hook'], every => '1 hour',
                                                 messages => '{"rule.resolved": "{{new.id}}"}')$$);
-- filters
SELECT test.row_rule_error(NULL, '{{new.amount | round(2)}}');
SELECT test.row_rule_error(NULL, '{{new.amount | number(11)}}');
SELECT test.row_rule_error(NULL, '{{new.amount | number(-1)}}');
SELECT test.row_rule_error(NULL, '{{new.amount | number(''2'')}}');
SELECT test.row_rule_error(NULL, '{{new.amount | number(2.5)}}');
SELECT test.row_rule_error(NULL, '{{new.amount | number(99999999999)}}');
SELECT test.row_rule_error(NULL, '{{new.note | truncate}}');
SELECT test.row_rule_error(NULL, '{{new.note | truncate(0)}}');
SELECT test.row_rule_error(NULL, '{{new.note | truncate(10001)}}');
SELECT test.row_rule_error(NULL, '{{new.note | upper(1)}}');
SELECT test.row_rule_error(NULL, '{{new.note | default}}');
SELECT test.row_rule_error(NULL, '{{new.note | default('''')}}');
SELECT test.row_rule_error(NULL, '{{new.note | default(''unterminated)}}');
SELECT test.row_rule_error(NULL, '{{new.note | default(' || quote_literal(repeat('x', 201)) || ')}}');
SELECT test.row_rule_error(NULL, '{{new.placed_at | time(' || quote_literal(repeat('Y', 65)) || ')}}');
SELECT test.row_rule_error(NULL, '{{new.note | upper lower}}');
SELECT test.row_rule_error(NULL, '{{new.note | }}');
SELECT test.row_rule_error(NULL, '{{ | upper}}');
SELECT test.row_rule_error(NULL, '{{rule | number(2)}}');
SELECT test.row_rule_error(NULL, '{{new.note | number(2)}}');
SELECT test.row_rule_error(NULL, '{{new.amount | time}}');
SELECT test.row_rule_error(NULL, '{{new.amount | upper | number}}');
SELECT test.row_rule_error(NULL, '{{new.amount | number(2) | percent}}');
SELECT test.row_rule_error(NULL, '{{new.nope | upper}}');
SELECT test.row_rule_error('{"row.inserted": "{{new.amount | number(20)}}"}');
SELECT test.full_error($$SELECT herald.on_threshold('msg-bad', 'SELECT 1', '>', 1, ARRAY['msg-hook'], every => '1 hour',
                                                 message => '{{key | percent}}')$$);
SELECT test.full_error($$SELECT herald.on_threshold('msg-bad', 'SELECT 1', '>', 1, ARRAY['msg-hook'], every => '1 hour',
                                                 message => '{{level | time}}')$$);
-- a channel's subject takes filters too, checked the same way
SELECT test.full_error($$SELECT herald.create_channel('msg-bad', 'email', 'smtp://127.0.0.1:1', recipients => ARRAY['a@example.com'],
                                                   sender => 'b@example.com', subject => '{{decided_by | number}}')$$);
-- alter_rule checks as a declaration does
SELECT herald.on_change('msg-alter', 'msg_orders', ARRAY['msg-hook'], ARRAY['INSERT']);
SELECT test.full_error($$SELECT herald.alter_rule('msg-alter', messages => '{"rule.fired": "x"}')$$);
SELECT test.full_error($$SELECT herald.alter_rule('msg-alter', messages => '{"row.inserted": "{{new.id | nope}}"}')$$);
SELECT test.full_error($$SELECT herald.alter_rule('msg-alter', messages => '{"row.inserted": "x"}', reset => '{messages}')$$);
SELECT herald.alter_rule('msg-alter', messages => '{}');
SELECT messages FROM herald.rules WHERE name = 'msg-alter';
SELECT herald.drop_rule('msg-alter');
SELECT count(*) AS stored FROM herald.rule_defs WHERE name = 'msg-bad';

-------------------------------------------------------------------------------
-- Hostile templates: thousands of filters, filters nested, a huge truncate
-- repeated, a placeholder made of pipes: refused or bounded.
-------------------------------------------------------------------------------
SELECT test.row_rule_error(NULL, '{{new.note' || repeat(' | upper', 5000) || '}}');
SELECT test.row_rule_error(NULL, '{{new.note' || repeat(' | upper', 9) || '}}');
SELECT test.row_rule_error(NULL, '{{new.note | default(''{{new.note | upper}}'')}}');
SELECT test.row_rule_error(NULL, '{{new.note | truncate(1' || repeat('0', 40) || ')}}');
SELECT test.row_rule_error(NULL, '{{' || repeat('|', 3000) || '}}');
-- a big value truncated to one character 2,000 times costs a short copy
-- each; eight filters is the most, accepted; the message stays within
-- herald.max_message_size
SELECT herald.on_change('msg-hostile', 'msg_orders', ARRAY['msg-hook'], ARRAY['INSERT'],
    message => repeat('{{new.note | lower | truncate(1) | upper | default(''x'')}}', 2000)
               || '|{{new.note' || repeat(' | upper', 8) || '}}');
INSERT INTO msg_orders (id, note) VALUES (40, repeat('ab', 100000));
SELECT herald.flush();
SELECT d.status, octet_length(m.message) AS bytes,
       m.message LIKE '%' || E'\u2026 [truncated]' AS cut, left(m.message, 6) AS starts,
       position('|' in m.message) AS bar_at, substr(m.message, 4002, 6) AS after_bar
  FROM herald.deliveries d,
       LATERAL (SELECT message FROM test.messages('/messages/hook')
                 WHERE message LIKE 'A' || E'\u2026' || '%') m
 WHERE d.channel = 'msg-hook' AND d.event_id = (SELECT max(id) FROM herald.events WHERE rule = 'msg-hostile');
SELECT herald.drop_rule('msg-hostile');
-- a column a placeholder names, dropped or renamed since, stays as written,
-- filters and all, as the message rendered from SQL (herald._render) shows
SELECT herald._render($${{new.id | number}} {{new.gone | upper}} {{new.gone | default('none')}} {{new.gone}} {{old.gone | default('n/a')}}$$,
                      'msg-gone', 1, 'row.inserted', '{"new": {"id": 1000}}', 1000) AS message;
-- a rule.error that names a table ran no metric: its default message is
-- the error alone
SELECT herald.on_change('msg-table', 'msg_orders', ARRAY['msg-hook'], ARRAY['INSERT']);
DROP TABLE msg_orders;
SELECT herald.flush();
SELECT type, message FROM test.messages('/messages/hook') WHERE message LIKE 'msg-table%';
SELECT herald._render(NULL, 'msg-table', 1, 'rule.error',
                      '{"table": "msg_orders", "operation": "INSERT", "error": "the condition ran longer than herald.condition_timeout (50 ms)"}',
                      1000) AS capture_error;
SELECT herald.drop_rule('msg-table');
DELETE FROM gauges WHERE name = 'msg';
