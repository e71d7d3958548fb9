-- Actions in messages: every kind shows the actions of an event that awaits
-- a decision (a rule's choices, or Acknowledge / Record a decision), one
-- signed link each; the SQL hint is left out then.  Slack buttons are links,
-- or carry their token on an interactive channel; a decision recorded from
-- a Slack click replaces the clicked message through its response_url.
\set SHOW_CONTEXT never

-- Links carry tokens that change every run (expiry, MAC): masked, as are
-- times, ids and webhook ids.  (In an email a token's "-" that begins a
-- quoted-printable line is =2D.)
CREATE FUNCTION test.act_mask(t text) RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
           regexp_replace(regexp_replace(
        replace(t, E'=\r\n', ''),
        '/d/([A-Za-z0-9_-]|=2D)+', '/d/TOKEN', 'g'),
        '"value": "[A-Za-z0-9_-]{20,}"', '"value": "TOKEN"', 'g'),
        '\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d(:\d\d)?)?', 'TIME', 'g'),
        '(event |event_id": |X-Herald-Event: |event_id=|decision_id": )\d+', '\1N', 'g'),
        'msg_\d+_\d+', 'msg_N', 'g'),
        '\d\d:\d\d UTC', 'HH:MM UTC', 'g'),
        '(herald\.acknowledge\(|herald\.decide\()\d+', '\1N', 'g'),
        '[A-Z][a-z][a-z], \d{1,2} [A-Z][a-z][a-z] \d{4} \d\d:\d\d:\d\d \+0000', 'DATE', 'g')
$$;
CREATE FUNCTION test.act_body(r jsonb) RETURNS text
LANGUAGE sql AS $$ SELECT test.act_mask(jsonb_pretty((r ->> 'body')::jsonb)) $$;

-- Settings reach the delivery worker at its next loop after the reload:
-- send probes (a rule with choices) until one shows actions, or none.
CREATE TABLE act_probe (id serial PRIMARY KEY);
SELECT herald.create_channel('act-probe', 'webhook', test.url('/actions/probe'));
SELECT herald.on_change('act-probe', 'act_probe', ARRAY['act-probe'], ARRAY['INSERT'],
                        choices => ARRAY['Seen']);
CREATE PROCEDURE test.await_actions(want boolean)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        INSERT INTO act_probe DEFAULT VALUES;
        COMMIT;
        PERFORM herald.flush();
        IF (SELECT ((r ->> 'body')::jsonb -> 'data' ? 'actions')
              FROM test.received('/actions/probe') r
             ORDER BY (r ->> 'n')::int DESC LIMIT 1) = want THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'the delivery worker did not take the new herald.public_url';
END
$$;

ALTER SYSTEM SET herald.public_url = 'https://decide.example';
SELECT pg_reload_conf();
CALL test.await_actions(true);

CREATE TABLE act_orders (id int PRIMARY KEY, item text, amount numeric);
SELECT herald.create_channel('act-hook', 'webhook', test.url('/actions/hook'));
SELECT herald.create_channel('act-slack', 'slack', test.url('/actions/slack'), rate_limit => 1000);
SELECT herald.create_channel('act-slack-i', 'slack', test.url('/actions/islack'), rate_limit => 1000,
                             slack_signing_secret => 'abcdef0123456789abcdef0123456789',
                             headers => '{"X-Channel-Token": "for-the-webhook-only"}');
SELECT herald.create_channel('act-teams', 'teams', test.url('/actions/teams'));
SELECT herald.create_channel('act-chat', 'google_chat', test.url('/actions/chat'), rate_limit => 1000);
SELECT herald.create_channel('act-mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['po@example.com'], sender => 'herald@example.com');

-------------------------------------------------------------------------------
-- A row rule with choices: every kind's golden payload.
-------------------------------------------------------------------------------
SELECT herald.on_change('act-choices', 'act_orders',
                        ARRAY['act-hook', 'act-slack', 'act-slack-i', 'act-teams', 'act-chat', 'act-mail'],
                        ARRAY['INSERT'],
                        message => 'Order {{new.id}}: {{new.item}} for {{new.amount}} EUR. Roll back the new checkout form?',
                        choices => ARRAY['Roll back the form', 'Keep watching', 'Escalate & <page> "on-call"']);
INSERT INTO act_orders VALUES (1, 'Espresso machine', 12500);
SELECT herald.flush();
SELECT channel, status, last_status FROM herald.deliveries d
  JOIN herald.events e ON e.id = d.event_id
 WHERE e.rule = 'act-choices' ORDER BY channel;
SELECT test.act_body(r) AS webhook FROM test.received('/actions/hook') r;
SELECT test.act_body(r) AS slack FROM test.received('/actions/slack') r;
SELECT test.act_body(r) AS slack_interactive FROM test.received('/actions/islack') r;
SELECT test.act_body(r) AS teams FROM test.received('/actions/teams') r;
SELECT test.act_body(r) AS chat FROM test.received('/actions/chat') r;
SELECT test.act_mask(m ->> 'data') AS email FROM test.mails() m
 WHERE m ->> 'data' LIKE '%act-choices%';

-- each link is a valid token for its action, event and channel; a Slack
-- button's value is the same token as the link behind it
SELECT a ->> 'id' AS id, a ->> 'label' AS label, t.status, t.action,
       t.event_id = e.id AS this_event, t.channel_id = c.id AS this_channel,
       t.recipient = '' AS any_reader,
       t.expires_at BETWEEN now() + interval '6 days 23 hours' AND now() + interval '7 days 1 hour' AS week
  FROM test.received('/actions/hook') r,
       jsonb_array_elements((r ->> 'body')::jsonb -> 'data' -> 'actions') a,
       herald._link_check(substring(a ->> 'url' FROM '/d/([A-Za-z0-9_-]+)$')) t,
       herald.events e, herald.channel_defs c
 WHERE e.rule = 'act-choices' AND c.name = 'act-hook'
 ORDER BY t.action;
SELECT t.status, t.action, t.channel_id = c.id AS this_channel
  FROM test.received('/actions/islack') r,
       jsonb_array_elements((r ->> 'body')::jsonb -> 'blocks') b,
       jsonb_array_elements(b -> 'elements') el,
       herald._link_check(el ->> 'value') t,
       herald.channel_defs c
 WHERE b ->> 'block_id' = 'herald-actions' AND c.name = 'act-slack-i'
 ORDER BY t.action;
-- the single recipient of an email channel is bound in its links
SELECT DISTINCT t.status, t.recipient
  FROM test.mails() m,
       regexp_matches(replace(replace(m ->> 'data', E'=\r\n', ''), '=2D', '-'),
                      'https://decide.example/d/([A-Za-z0-9_-]+)', 'g') AS u(token),
       herald._link_check(u.token[1]) t
 WHERE m ->> 'data' LIKE '%act-choices%';
-- a choice of 75 characters, as long as one may be, fits a Slack button whole
CREATE TABLE act_long (id int);
SELECT herald.on_change('act-long', 'act_long', ARRAY['act-slack', 'act-hook'], ARRAY['INSERT'],
                        choices => ARRAY[repeat('é', 74) || '!', 'Keep']);
INSERT INTO act_long VALUES (1);
SELECT herald.flush();
SELECT el #>> '{text,text}' AS slack_button
  FROM test.received('/actions/slack') r, jsonb_array_elements((r ->> 'body')::jsonb -> 'blocks') b,
       jsonb_array_elements(b -> 'elements') el
 WHERE r ->> 'body' LIKE '%act-long%' AND b ->> 'block_id' = 'herald-actions';
SELECT length(a ->> 'label') AS webhook_label_length
  FROM test.received('/actions/hook') r, jsonb_array_elements((r ->> 'body')::jsonb -> 'data' -> 'actions') a
 WHERE (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'act-long';
SELECT herald.drop_rule('act-long');
DROP TABLE act_long;
-- every payload is JSON of the right shape, within its kind's limits
SELECT count(*) AS slack_messages,
       bool_and(jsonb_array_length(b -> 'blocks') <= 50) AS blocks_within_50,
       bool_and((SELECT bool_and(jsonb_array_length(x -> 'elements') <= 25
                                 AND (SELECT bool_and(length(el #>> '{text,text}') <= 75
                                                      AND coalesce(length(el ->> 'value'), 0) <= 2000
                                                      AND coalesce(length(el ->> 'url'), 0) <= 3000)
                                        FROM jsonb_array_elements(x -> 'elements') el))
                   FROM jsonb_array_elements(b -> 'blocks') x WHERE x ->> 'type' = 'actions')) AS buttons_within_limits
  FROM (SELECT (r ->> 'body')::jsonb AS b FROM test.received('/actions/') r
         WHERE r ->> 'path' IN ('/actions/slack', '/actions/islack')) s;
SELECT count(*) AS teams_messages,
       bool_and(b #>> '{attachments,0,content,version}' = '1.4') AS card_1_4,
       bool_and(octet_length(b::text) < 28000) AS under_28kb,
       bool_and((SELECT bool_and(jsonb_array_length(x -> 'actions') <= 5)
                   FROM jsonb_array_elements(b #> '{attachments,0,content,body}') x
                  WHERE x ->> 'type' = 'ActionSet')) AS action_sets_of_5
  FROM (SELECT (r ->> 'body')::jsonb AS b FROM test.received('/actions/teams') r) s;

-- a huge, hostile row: each kind cuts the message to its limit, never an action
INSERT INTO act_orders VALUES (2, repeat('<&>"', 30000), 1);
SELECT herald.flush('30 seconds');
SELECT channel, status FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE e.rule = 'act-choices' AND e.payload -> 'new' ->> 'id' = '2' ORDER BY channel;
SELECT r ->> 'path' AS path,
       octet_length(r ->> 'body') < CASE r ->> 'path' WHEN '/actions/teams' THEN 28000
                                                      WHEN '/actions/chat' THEN 32000
                                                      ELSE 40000 END AS within_limit,
       CASE r ->> 'path'
           WHEN '/actions/teams' THEN
               (SELECT string_agg(a ->> 'title', ' | ')
                  FROM jsonb_array_elements(b #> '{attachments,0,content,body}') x,
                       jsonb_array_elements(x -> 'actions') a
                 WHERE x ->> 'type' = 'ActionSet')
           WHEN '/actions/chat' THEN
               (SELECT string_agg(a ->> 'text', ' | ')
                  FROM jsonb_array_elements(b #> '{cardsV2,0,card,sections,0,widgets,0,buttonList,buttons}') a)
           ELSE
               (SELECT string_agg(el #>> '{text,text}', ' | ')
                  FROM jsonb_array_elements(b -> 'blocks') x, jsonb_array_elements(x -> 'elements') el
                 WHERE x ->> 'block_id' = 'herald-actions')
       END AS actions,
       b::text LIKE '%[truncated]%' AS message_cut
  FROM (SELECT r, (r ->> 'body')::jsonb AS b FROM test.received('/actions/') r) s
 WHERE r ->> 'path' IN ('/actions/slack', '/actions/islack', '/actions/teams', '/actions/chat')
   AND (r ->> 'body' LIKE '%&lt;&amp;&gt;%' OR r ->> 'body' LIKE '%<&>%')
 ORDER BY 1;
SELECT count(*) AS buttons FROM test.mails() m,
       regexp_matches(replace(m ->> 'data', E'=\r\n', ''), '<a href=3D"https://decide.example/d/', 'g')
 WHERE m ->> 'data' LIKE '%&lt;&amp;&gt;%';

-------------------------------------------------------------------------------
-- A threshold rule without choices: Acknowledge and Record a decision, and
-- no SQL in the message.
-------------------------------------------------------------------------------
CREATE TABLE act_basket (abandoned int);
INSERT INTO act_basket VALUES (10);
SELECT herald.on_threshold('act-baskets', 'SELECT abandoned FROM act_basket', '>', 100,
                           ARRAY['act-hook', 'act-slack', 'act-slack-i', 'act-teams', 'act-chat', 'act-mail'],
                           watch => ARRAY['act_basket'::regclass]);
SELECT herald.flush();
UPDATE act_basket SET abandoned = 150;
SELECT herald.flush();
SELECT (r ->> 'body')::jsonb -> 'data' ->> 'message' AS message,
       test.act_mask(jsonb_pretty((r ->> 'body')::jsonb -> 'data' -> 'actions')) AS actions
  FROM test.received('/actions/hook') r WHERE (r ->> 'body')::jsonb ->> 'type' = 'rule.fired';
SELECT test.act_mask(jsonb_pretty(b)) AS slack_actions
  FROM test.received('/actions/slack') r, jsonb_array_elements((r ->> 'body')::jsonb -> 'blocks') b
 WHERE r ->> 'body' LIKE '%act-baskets%' AND b ->> 'block_id' = 'herald-actions';
SELECT test.act_mask(jsonb_pretty(b)) AS slack_interactive_actions
  FROM test.received('/actions/islack') r, jsonb_array_elements((r ->> 'body')::jsonb -> 'blocks') b
 WHERE r ->> 'body' LIKE '%act-baskets%' AND b ->> 'block_id' = 'herald-actions';
SELECT test.act_mask(jsonb_pretty(b)) AS teams_body
  FROM test.received('/actions/teams') r,
       jsonb_array_elements((r ->> 'body')::jsonb #> '{attachments,0,content,body}') b
 WHERE r ->> 'body' LIKE '%act-baskets%';
SELECT test.act_mask(jsonb_pretty((r ->> 'body')::jsonb -> 'cardsV2')) AS chat_card
  FROM test.received('/actions/chat') r WHERE r ->> 'body' LIKE '%act-baskets%';
SELECT test.act_mask(split_part(split_part(m ->> 'data', 'Content-Type: text/html', 1),
                                'quoted-printable', 2)) AS email_text
  FROM test.mails() m WHERE m ->> 'data' LIKE '%act-baskets%';

-- a row rule with neither choices nor follow-ups awaits no decision: no
-- actions, and the message still says how to answer in SQL
SELECT herald.on_change('act-quiet', 'act_orders', ARRAY['act-hook'], ARRAY['UPDATE']);
UPDATE act_orders SET amount = 12000 WHERE id = 1;
SELECT herald.flush();
SELECT test.act_mask((r ->> 'body')::jsonb -> 'data' ->> 'message') AS message,
       (r ->> 'body')::jsonb -> 'data' ? 'actions' AS has_actions
  FROM test.received('/actions/hook') r WHERE (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'act-quiet';

-- a follow-up asks, and its buttons answer
SELECT herald.on_change('act-followup', 'act_orders', ARRAY['act-hook'], ARRAY['DELETE'],
                        followup_after => '1 second');
DELETE FROM act_orders WHERE id = 1;
SELECT test.wait_until($$SELECT count(*) > 0 FROM herald.events
                          WHERE rule = 'act-followup' AND type = 'decision.followup'$$) AS followed_up;
SELECT herald.flush();
SELECT (r ->> 'body')::jsonb ->> 'type' AS type,
       test.act_mask((r ->> 'body')::jsonb -> 'data' ->> 'message') AS message,
       (SELECT string_agg(a ->> 'label', ', ')
          FROM jsonb_array_elements((r ->> 'body')::jsonb -> 'data' -> 'actions') a) AS actions
  FROM test.received('/actions/hook') r WHERE (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'act-followup'
 ORDER BY (r ->> 'n')::int;
SELECT herald.drop_rule('act-followup');

-------------------------------------------------------------------------------
-- A decision from a Slack click: decision.recorded replaces the clicked
-- message through its response_url, and the other channels hear of it.
-------------------------------------------------------------------------------
SELECT herald._record_decision(e, 'acknowledgement', NULL, '@ann', current_user, 'slack',
                               actor_id => 'U024BE7LH', channel_id => c.id,
                               request_key => 'act-test-1',
                               response_url => test.url('/actions/response/1')) > 0 AS recorded
  FROM herald.event_log e, herald.channel_defs c
 WHERE e.rule = 'act-choices' AND e.type = 'row.inserted' AND e.payload -> 'new' ->> 'id' = '1'
   AND c.name = 'act-slack-i';
SELECT herald._record_decision(e, 'decision', 'the form lost 30% of sales', '@ann', current_user, 'slack',
                               choice => 'Roll back the form', action => 'Restore the old form',
                               action_owner => 'bob', action_due => '2026-12-15',
                               actor_id => 'U024BE7LH', channel_id => c.id,
                               request_key => 'act-test-2',
                               response_url => test.url('/actions/response/2')) > 0 AS recorded
  FROM herald.event_log e, herald.channel_defs c
 WHERE e.rule = 'act-choices' AND e.type = 'row.inserted' AND e.payload -> 'new' ->> 'id' = '1'
   AND c.name = 'act-slack-i';
SELECT herald.flush();
SELECT channel, status, last_status FROM herald.deliveries d
  JOIN herald.events e ON e.id = d.event_id
 WHERE e.type = 'decision.recorded' AND e.rule = 'act-choices' ORDER BY channel, d.id;
-- the update goes to response_url, not to the channel's webhook
SELECT count(*) AS decisions_posted_to_the_interactive_webhook
  FROM test.received('/actions/islack') r WHERE r ->> 'body' LIKE '%acknowledged%' OR r ->> 'body' LIKE '%Decision by%';
SELECT r ->> 'path' AS path, test.act_body(r) AS slack_update
  FROM test.received('/actions/response/') r ORDER BY r ->> 'path';
-- the channel's own headers go to its webhook only
SELECT r ->> 'path' LIKE '/actions/response/%' AS to_response_url,
       bool_or(EXISTS (SELECT 1 FROM jsonb_object_keys(r -> 'headers') k
                        WHERE lower(k) = 'x-channel-token')) AS channel_header
  FROM test.received('/actions/') r
 WHERE r ->> 'path' = '/actions/islack' OR r ->> 'path' LIKE '/actions/response/%'
 GROUP BY 1 ORDER BY 1;
-- a response_url is a request like any other: the network policy applies
SELECT herald.alter_channel('act-slack-i', max_attempts => 1);
SELECT herald._record_decision(e, 'acknowledgement', NULL, '@mallory', current_user, 'slack',
                               channel_id => c.id, request_key => 'act-test-3',
                               response_url => 'http://169.254.169.254/latest/meta-data') > 0 AS recorded
  FROM herald.event_log e, herald.channel_defs c
 WHERE e.rule = 'act-choices' AND e.type = 'row.inserted' AND e.payload -> 'new' ->> 'id' = '1'
   AND c.name = 'act-slack-i';
SELECT herald.flush();
SELECT d.status, d.last_error
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE e.type = 'decision.recorded' AND e.payload ->> 'decided_by' = '@mallory'
   AND d.channel = 'act-slack-i';
-- every other channel hears of it
SELECT test.act_mask((r ->> 'body')::jsonb -> 'blocks' -> 0 -> 'text' ->> 'text') AS slack_title,
       test.act_mask((r ->> 'body')::jsonb -> 'blocks' -> 1 -> 'text' ->> 'text') AS slack_text
  FROM test.received('/actions/slack') r WHERE r ->> 'body' LIKE '%@ann%'
 ORDER BY 1;
SELECT test.act_body(r) AS webhook_decision
  FROM test.received('/actions/hook') r
 WHERE (r ->> 'body')::jsonb ->> 'type' = 'decision.recorded'
   AND (r ->> 'body')::jsonb -> 'data' ->> 'kind' = 'decision';
SELECT test.act_mask(m ->> 'data') AS email_decision FROM test.mails() m
 WHERE m ->> 'data' LIKE '%X-Herald-Type: decision.recorded%' AND m ->> 'data' LIKE '%@ann acknowledged%';

-- a grouped rule's decisions name the key; an SQL answer is announced too
CREATE TABLE act_shops (shop text, depth int);
INSERT INTO act_shops VALUES ('paris', 10);
SELECT herald.on_threshold('act-shops', 'SELECT shop, depth FROM act_shops', '>', 100, ARRAY['act-hook'],
                           watch => ARRAY['act_shops'::regclass]);
SELECT herald.flush();
UPDATE act_shops SET depth = 500;
SELECT herald.flush();
SELECT herald.acknowledge(id, note => 'looking into it') > 0 AS acknowledged
  FROM herald.events WHERE rule = 'act-shops' AND type = 'rule.fired';
SELECT herald.decide(id, 'restock', action_owner => 'bob', action_due => '2026-12-20') > 0 AS decided
  FROM herald.events WHERE rule = 'act-shops' AND type = 'rule.fired';
SELECT herald.flush();
SELECT replace(test.act_mask((r ->> 'body')::jsonb -> 'data' ->> 'message'), current_user, 'ROLE') AS message,
       (r ->> 'body')::jsonb -> 'data' ? 'actions' AS has_actions
  FROM test.received('/actions/hook') r
 WHERE (r ->> 'body')::jsonb ->> 'type' = 'decision.recorded'
   AND (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'act-shops'
 ORDER BY (r ->> 'body')::jsonb -> 'data' ->> 'kind';
SELECT herald.drop_rule('act-shops');
DROP TABLE act_shops;

-- channel templates may use the decision placeholders; rule templates not
-- (a rule's message never serves decision.recorded)
SELECT herald.alter_channel('act-mail', subject => '{{rule}}: {{decision_summary}} ({{decided_by}})');
\set VERBOSITY default
SELECT herald.on_change('act-bad', 'act_orders', ARRAY['act-hook'], message => '{{decided_by}}');
\set VERBOSITY terse
SELECT herald.alter_channel('act-mail', subject => NULL);

-------------------------------------------------------------------------------
-- Without a public URL, no actions: the SQL hint is back.
-------------------------------------------------------------------------------
ALTER SYSTEM RESET herald.public_url;
SELECT pg_reload_conf();
CALL test.await_actions(false);
UPDATE act_basket SET abandoned = 5;
SELECT herald.flush();
UPDATE act_basket SET abandoned = 500;
SELECT herald.flush();
SELECT test.act_mask((r ->> 'body')::jsonb -> 'data' ->> 'message') AS message,
       (r ->> 'body')::jsonb -> 'data' ? 'actions' AS has_actions
  FROM test.received('/actions/hook') r
 WHERE (r ->> 'body')::jsonb ->> 'type' = 'rule.fired'
   AND (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'act-baskets'
 ORDER BY (r ->> 'n')::int;

-- clean up
SELECT herald.drop_rule(n) FROM unnest(ARRAY['act-probe', 'act-choices', 'act-baskets', 'act-quiet']) n;
SELECT herald.drop_channel(name) FROM herald.channels WHERE name LIKE 'act-%' ORDER BY name;
DROP TABLE act_orders, act_basket, act_probe;
DROP PROCEDURE test.await_actions(boolean);
