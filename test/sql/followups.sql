-- Follow-ups: they quote the alert they ask about, thread with it where the
-- kind can, make one stream per episode (the fired event and its
-- escalation), stop when a decision about any event of the episode is
-- recorded, and stop when the episode resolves, or ask once more
-- (followup_on_resolve => 'ask_once').
\set SHOW_CONTEXT never

-- Times, ids, thread keys and webhook ids vary from run to run.
CREATE FUNCTION test.fu_mask(t text) RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
           regexp_replace(regexp_replace(
        replace(t, E'=\r\n', ''),
        '\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d(:\d\d)?)?', 'TIME', 'g'),
        '(event |event_id": |X-Herald-Event: )\d+', '\1N', 'g'),
        'msg_\d+_\d+', 'msg_N', 'g'),
        'pg_herald-\d+-\d+', 'pg_herald-INSTALLATION-N', 'g'),
        'herald\.decide\(\d+', 'herald.decide(N', 'g'),
        '\d\d:\d\d UTC', 'HH:MM UTC', 'g'),
        '[A-Z][a-z][a-z], \d{1,2} [A-Z][a-z][a-z] \d{4} \d\d:\d\d:\d\d \+0000', 'DATE', 'g')
$$;

-- Run the sender now, as the scheduler does every second: what a test
-- made due is asked (or not) at once, with no waiting.
CREATE FUNCTION test.send_followups() RETURNS void
LANGUAGE sql AS $$ SELECT herald._send_followups(NULL) $$;

-- The follow-ups of a rule created since a mark (test.fu_marks).
CREATE TABLE test.fu_marks (name text PRIMARY KEY, at timestamptz NOT NULL);
CREATE FUNCTION test.followups_since(rule text, mark text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM herald.events e
     WHERE e.rule = followups_since.rule AND e.type = 'decision.followup'
       AND e.created_at >= (SELECT m.at FROM test.fu_marks m WHERE m.name = followups_since.mark)
$$;

SELECT herald.create_channel('fu-hook', 'webhook', test.url('/followups/hook'));
SELECT herald.create_channel('fu-slack', 'slack', test.url('/followups/slack'), rate_limit => 1000);
SELECT herald.create_channel('fu-chat', 'google_chat', test.url('/followups/chat?key=k&token=t'),
                             rate_limit => 1000);
SELECT herald.create_channel('fu-mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['followups@example.com'], sender => 'herald@example.com');

-------------------------------------------------------------------------------
-- An episode that fires (warning) and escalates (critical): one stream of
-- follow-ups, about its rule.fired event, quoting it.
-------------------------------------------------------------------------------
CREATE TABLE fu_baskets (region text PRIMARY KEY, abandoned int NOT NULL);
INSERT INTO fu_baskets VALUES ('paris', 10);
SELECT herald.on_threshold('abandoned', 'SELECT region, abandoned FROM fu_baskets', '>', 100,
                           ARRAY['fu-hook', 'fu-slack', 'fu-chat', 'fu-mail'],
                           watch => ARRAY['fu_baskets'::regclass], warning_threshold => 50,
                           message => '{{key}}: {{value}} baskets abandoned ({{level}})',
                           followup_after => '1 second', followup_every => '1 second');
SELECT herald.flush();
UPDATE fu_baskets SET abandoned = 70;      -- fires, warning
SELECT herald.flush();
UPDATE fu_baskets SET abandoned = 150;     -- escalates, critical
SELECT herald.flush();
CREATE TABLE test.fu_fired AS
SELECT id FROM herald.events WHERE rule = 'abandoned' AND type = 'rule.fired';
SELECT count(*) AS escalations FROM herald.events WHERE rule = 'abandoned' AND type = 'rule.escalated';
-- the escalation opens no stream of its own
SELECT e.type, x.awaits_decision IS TRUE AS awaits_a_followup
  FROM herald.events e JOIN herald.event_log x ON x.id = e.id
 WHERE e.rule = 'abandoned' AND e.type IN ('rule.fired', 'rule.escalated') ORDER BY e.id;
SELECT test.wait_until($$SELECT count(*) >= 2 FROM herald.events
                          WHERE rule = 'abandoned' AND type = 'decision.followup'$$) AS asked_twice;
SELECT herald.flush();
-- every follow-up is about the episode's first event
SELECT count(*) >= 2 AS followups,
       bool_and((payload ->> 'about_event_id')::bigint = (SELECT id FROM test.fu_fired)) AS about_the_fired_event,
       bool_and(payload ->> 'about_type' = 'rule.fired') AS about_type
  FROM herald.events WHERE rule = 'abandoned' AND type = 'decision.followup';
-- what the follow-up quotes
SELECT key, test.fu_mask(value) AS value
  FROM herald.events e, jsonb_each_text(e.payload) AS p(key, value)
 WHERE e.id = (SELECT min(id) FROM herald.events WHERE rule = 'abandoned' AND type = 'decision.followup')
   AND (key LIKE 'about_%' OR key = 'key') AND key <> 'about_event_id'
 ORDER BY key;

-- the delivered follow-ups, golden (the first one each kind received)
SELECT test.fu_mask(jsonb_pretty((r ->> 'body')::jsonb)) AS slack
  FROM test.received('/followups/slack') r
 WHERE (r ->> 'body')::jsonb ->> 'text' LIKE 'abandoned [paris]: what was decided%'
 ORDER BY (r ->> 'n')::int LIMIT 1;
SELECT test.fu_mask(jsonb_pretty((r ->> 'body')::jsonb)) AS google_chat
  FROM test.received('/followups/chat') r
 WHERE (r ->> 'body')::jsonb ->> 'text' LIKE '*abandoned [paris]: what was decided%'
 ORDER BY (r ->> 'n')::int LIMIT 1;
SELECT test.fu_mask(m ->> 'data') AS email
  FROM test.mails() m
 WHERE m ->> 'data' LIKE '%X-Herald-Type: decision.followup%' AND m -> 'rcpt_tos' ? 'followups@example.com'
 ORDER BY (m ->> 'n')::int LIMIT 1;
SELECT test.fu_mask(jsonb_pretty((r ->> 'body')::jsonb -> 'data')) AS webhook_data
  FROM test.received('/followups/hook') r
 WHERE (r ->> 'body')::jsonb ->> 'type' = 'decision.followup'
   AND (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'abandoned'
 ORDER BY (r ->> 'n')::int LIMIT 1;

-- threads: on Google Chat every message of the episode (fired, escalated,
-- follow-ups) has the thread key of its first event
SELECT (r ->> 'body')::jsonb ->> 'text' LIKE '%is firing%' AS fired,
       (r ->> 'body')::jsonb -> 'thread' ->> 'threadKey'
           = format('pg_herald-%s-%s', (SELECT id FROM herald.installation),
                    (SELECT id FROM test.fu_fired)) AS in_the_episode_thread,
       count(*) > 0 AS messages
  FROM test.received('/followups/chat') r
 WHERE (r ->> 'body')::jsonb ->> 'text' LIKE '%abandoned%'
 GROUP BY 1, 2 ORDER BY 1, 2;
-- email: each later message replies to the first one (In-Reply-To and
-- References name its Message-ID); the first one replies to nothing
CREATE TABLE test.fu_mails AS
SELECT (regexp_match(m ->> 'data', E'X-Herald-Type: ([a-z.]+)\r\n'))[1] AS type,
       (regexp_match(m ->> 'data', E'\r\nMessage-ID: (<[^>]+>)\r\n'))[1] AS message_id,
       (regexp_match(m ->> 'data', E'\r\nIn-Reply-To: (<[^>]+>)\r\n'))[1] AS in_reply_to,
       (regexp_match(m ->> 'data', E'\r\nReferences: (<[^>]+>)\r\n'))[1] AS refs
  FROM test.mails() m WHERE m -> 'rcpt_tos' ? 'followups@example.com';
SELECT type, count(*) > 0 AS mails,
       bool_and(in_reply_to IS NOT DISTINCT FROM
                CASE WHEN type <> 'rule.fired'
                     THEN (SELECT message_id FROM test.fu_mails WHERE type = 'rule.fired') END) AS replies_to_the_first,
       bool_and(refs IS NOT DISTINCT FROM in_reply_to) AS references_it
  FROM test.fu_mails GROUP BY type ORDER BY type;
SELECT test.fu_mask(message_id) AS first_message_id FROM test.fu_mails WHERE type = 'rule.fired';

-- the follow-ups are on the timeline of the episode's first event
SELECT DISTINCT kind, detail FROM herald.timeline
 WHERE event_id = (SELECT id FROM test.fu_fired) AND kind = 'followup';

-- a decision recorded through the escalation stops the stream
SELECT herald.decide((SELECT id FROM herald.events WHERE rule = 'abandoned' AND type = 'rule.escalated'),
                     'discount code for the region') > 0 AS decided;
INSERT INTO test.fu_marks VALUES ('decided', now());
-- due again (an hour ago), the sender asks nothing
UPDATE herald.event_log SET asked_at = asked_at - interval '1 hour' WHERE rule = 'abandoned';
SELECT test.send_followups();
SELECT test.followups_since('abandoned', 'decided') AS followups_after_the_decision,
       count(*) FILTER (WHERE x.awaits_decision) AS still_awaiting
  FROM herald.event_log x WHERE x.rule = 'abandoned';
SELECT herald.drop_rule('abandoned');

-------------------------------------------------------------------------------
-- Resolution: the follow-ups stop (the default), or one more is asked
-- (ask_once), and only one.
-------------------------------------------------------------------------------
CREATE TABLE fu_stock (item text PRIMARY KEY, level int NOT NULL);
INSERT INTO fu_stock VALUES ('flour', 50), ('sugar', 50);
SELECT herald.on_threshold('fu-flour', $$SELECT level FROM fu_stock WHERE item = 'flour'$$, '<', 10,
                           ARRAY['fu-hook'], watch => ARRAY['fu_stock'::regclass],
                           followup_after => '1 second', followup_every => '1 second');
SELECT herald.on_threshold('fu-sugar', $$SELECT level FROM fu_stock WHERE item = 'sugar'$$, '<', 10,
                           ARRAY['fu-hook'], watch => ARRAY['fu_stock'::regclass],
                           message => 'sugar: {{value}} kg left',
                           followup_after => '1 second', followup_every => '1 second',
                           followup_on_resolve => 'ask_once');
SELECT name, followup_on_resolve FROM herald.rule_defs WHERE name LIKE 'fu-%' ORDER BY name;
SELECT herald.flush();
UPDATE fu_stock SET level = 5;
SELECT herald.flush();
SELECT test.wait_until($$SELECT count(*) FILTER (WHERE rule = 'fu-flour') >= 1
                                AND count(*) FILTER (WHERE rule = 'fu-sugar') >= 1
                           FROM herald.events WHERE type = 'decision.followup'$$) AS asked_while_firing;
UPDATE fu_stock SET level = 40;          -- both resolve
SELECT herald.flush();
SELECT rule, state FROM herald.events e JOIN herald.rules r ON r.name = e.rule
 WHERE e.rule LIKE 'fu-%' AND e.type = 'rule.resolved' ORDER BY rule;
-- the resolution names the episode it ends
SELECT bool_and((r.payload ->> 'fired_event_id')::bigint = f.id) AS names_its_episode
  FROM herald.events r JOIN herald.events f ON f.rule = r.rule AND f.type = 'rule.fired'
 WHERE r.rule LIKE 'fu-%' AND r.type = 'rule.resolved';
INSERT INTO test.fu_marks VALUES ('resolved', now());

-- ask_once: one more follow-up, saying the episode resolved
SELECT test.wait_until($$SELECT test.followups_since('fu-sugar', 'resolved') >= 1$$) AS asked_once_more;
SELECT herald.flush();
SELECT e.payload ->> 'about_state' AS about_state,
       test.fu_mask(r.body -> 'data' ->> 'message') AS message
  FROM herald.events e
  JOIN (SELECT (x ->> 'body')::jsonb AS body FROM test.received('/followups/hook') x) r
    ON (r.body -> 'data' ->> 'event_id')::bigint = e.id
 WHERE e.rule = 'fu-sugar' AND e.type = 'decision.followup'
   AND e.created_at >= (SELECT at FROM test.fu_marks WHERE name = 'resolved');
-- made due again (an hour ago), neither rule asks any more
UPDATE herald.event_log SET asked_at = asked_at - interval '1 hour' WHERE rule LIKE 'fu-%';
SELECT test.send_followups();
-- (the scheduler may be the one that found it due: its transaction ends soon)
SELECT test.wait_until($$SELECT count(*) = 0 FROM herald.event_log
                          WHERE rule LIKE 'fu-%' AND awaits_decision$$) AS none_awaiting;
SELECT test.followups_since('fu-flour', 'resolved') AS flour_after_resolution,
       test.followups_since('fu-sugar', 'resolved') AS sugar_after_resolution;
-- the timeline says which follow-up came after the resolution
SELECT e.rule, t.detail, count(*) > 0 AS followups
  FROM herald.timeline t JOIN herald.events e ON e.id = t.event_id
 WHERE e.rule LIKE 'fu-%' AND t.kind = 'followup'
 GROUP BY 1, 2 ORDER BY 1, 2;

-- alter_rule changes it, validated like a declaration; row rules never resolve
SELECT herald.alter_rule('fu-flour', followup_on_resolve => 'ask_once');
SELECT changes FROM herald.rule_changes WHERE rule = 'fu-flour' ORDER BY changed_at DESC LIMIT 1;
SELECT herald.alter_rule('fu-flour', reset => ARRAY['followup_on_resolve']);
SELECT followup_on_resolve FROM herald.rule_defs WHERE name = 'fu-flour';
\set VERBOSITY default
SELECT herald.alter_rule('fu-flour', followup_on_resolve => 'ask_twice');
SELECT herald.on_threshold('fu-bad', 'SELECT 1', '>', 0, ARRAY['fu-hook'], every => '1 hour',
                           followup_on_resolve => NULL);
\set VERBOSITY terse
SELECT herald.on_change('fu-rows', 'fu_stock', ARRAY['fu-hook']);
SELECT herald.alter_rule('fu-rows', followup_on_resolve => 'ask_once');
SELECT count(*) AS not_declared FROM herald.rule_defs WHERE name = 'fu-bad';

-- a follow-up quotes its alert's message with herald._render, which has no
-- channel: times through filters are shown in herald.timezone (this crashed
-- the server before)
SELECT herald._render('{{since | time}}, {{since | time(''DD/MM HH24:MI TZ'')}}, {{value | number(1)}}',
                      'fu-render', 1, 'rule.fired',
                      '{"since": "2026-12-01T10:00:00+01:00", "value": 1234.56}', 1000) AS quoted;

-- clean up
SELECT herald.drop_rule('fu-rows');
SELECT herald.drop_rule('fu-flour');
SELECT herald.drop_rule('fu-sugar');
SELECT herald.drop_channel(c) FROM unnest(ARRAY['fu-hook', 'fu-slack', 'fu-chat', 'fu-mail']) c;
