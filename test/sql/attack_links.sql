-- Attacks on deciding from the message: an episode decided through any of
-- its events asks nothing more (escalations included), a decision through
-- a choice stops the reminders, an address a link cannot bind does not stop
-- every delivery, a choice fits a Slack button, and tokens whose fields are
-- out of range are refused before any key is looked up.
\set SHOW_CONTEXT never
ALTER SYSTEM SET herald.public_url = 'https://decide.example';
SELECT pg_reload_conf(), pg_sleep(0.3);
SELECT herald._link_base() AS link_base;

SELECT herald.create_channel('atk-hook', 'webhook', test.url('/atk'));
CREATE TABLE atk_level (v numeric);
INSERT INTO atk_level VALUES (0);

-- 1. An escalation belongs to its episode: it opens no follow-up stream of
-- its own (the episode's rule.fired event has one), and a decision about
-- the episode, however it comes, answers it: no follow-up asks again.
SELECT herald.on_threshold('atk-esc', 'SELECT v FROM public.atk_level', '>', 10, ARRAY['atk-hook'],
                           watch => ARRAY['atk_level'::regclass], warning_threshold => 5,
                           followup_after => '1 day', followup_every => '1 day');
UPDATE atk_level SET v = 6;
SELECT herald.flush();
UPDATE atk_level SET v = 11;
SELECT herald.flush();
CREATE TABLE test.atk AS
SELECT (SELECT id FROM herald.event_log WHERE rule = 'atk-esc' AND type = 'rule.fired') AS fired,
       (SELECT id FROM herald.event_log WHERE rule = 'atk-esc' AND type = 'rule.escalated') AS escalated;
SELECT e.type, e.awaits_decision FROM herald.event_log e, test.atk a
 WHERE e.id IN (a.fired, a.escalated) ORDER BY e.id;
-- two days go by, in this transaction only (the scheduler does not see
-- them): one follow-up asks, about the rule.fired event
BEGIN;
UPDATE herald.event_log SET created_at = created_at - interval '2 days'
 WHERE id IN (SELECT fired FROM test.atk UNION ALL SELECT escalated FROM test.atk);
SELECT count(*) AS rounds FROM herald._send_followups(NULL);
COMMIT;
SELECT e.type, (SELECT count(*) FROM herald.event_log f
                 WHERE f.type = 'decision.followup' AND f.about_event_id = e.id) AS followups
  FROM herald.event_log e, test.atk a WHERE e.id IN (a.fired, a.escalated) ORDER BY e.id;
-- the links of the escalation and of the follow-up bind the episode's
-- first event, and an answer through them is recorded on it
SELECT count(*) AS links, bool_and(l.status = 'valid' AND l.event_id = a.fired) AS bind_the_episode
  FROM test.atk a, herald.event_log f, herald.rule_defs r, herald.channel_defs c,
       (SELECT * FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1) k,
       jsonb_array_elements(herald._actions(f, r, c, k.id, k.secret)) act,
       LATERAL herald._link_check(substring(act ->> 'url' FROM '/d/([A-Za-z0-9_-]+)$')) l
 WHERE (f.id = a.escalated OR (f.type = 'decision.followup' AND f.about_event_id = a.fired))
   AND r.id = f.rule_id AND c.name = 'atk-hook';
SELECT (herald._episode(f.id)).id = a.fired AS followup_episode_is_fired
  FROM herald.event_log f, test.atk a
 WHERE f.type = 'decision.followup' AND f.about_event_id = a.fired;
SELECT herald.decide((SELECT id FROM herald.event_log
                       WHERE type = 'decision.followup' AND about_event_id = (SELECT fired FROM test.atk)),
                     'hold the release') > 0 AS decided;
SELECT d.event_id = a.fired AS on_fired FROM herald.decision_log d, test.atk a
 WHERE d.decision = 'hold the release';
-- neither the episode nor its escalation awaits anything now
SELECT e.type, e.awaits_decision FROM herald.event_log e, test.atk a
 WHERE e.id IN (a.fired, a.escalated) ORDER BY e.id;
-- two more days go by: nothing more is asked
BEGIN;
UPDATE herald.event_log SET created_at = created_at - interval '2 days', asked_at = asked_at - interval '2 days'
 WHERE id IN (SELECT fired FROM test.atk UNION ALL SELECT escalated FROM test.atk);
SELECT count(*) AS rounds FROM herald._send_followups(NULL);
COMMIT;
SELECT count(*) AS followups FROM herald.event_log
 WHERE type = 'decision.followup' AND about_event_id IN (SELECT fired FROM test.atk UNION ALL SELECT escalated FROM test.atk);
-- a row's columns named like the fields that lead to an episode lead
-- nowhere: a row event is its own episode
CREATE TABLE atk_spoof (fired_event_id bigint, about_event_id bigint);
SELECT herald.on_change('atk-spoof', 'atk_spoof', ARRAY['atk-hook'], choices => ARRAY['Yes']);
INSERT INTO atk_spoof SELECT fired, fired FROM test.atk;
SELECT herald.flush();
SELECT e.payload -> 'new' ? 'fired_event_id' AS row_has_it, (herald._episode(e.id)).id = e.id AS own_episode,
       l.event_id = e.id AS link_binds_the_row_event
  FROM herald.event_log e, herald.rule_defs r, herald.channel_defs c,
       (SELECT * FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1) k,
       LATERAL herald._link_check(substring(herald._actions(e, r, c, k.id, k.secret) -> 0 ->> 'url'
                                            FROM '/d/([A-Za-z0-9_-]+)$')) l
 WHERE e.rule = 'atk-spoof' AND r.id = e.rule_id AND c.name = 'atk-hook';
SELECT herald.drop_rule('atk-spoof');
DROP TABLE atk_spoof;
SELECT herald.drop_rule('atk-esc');

-- an escalation after the episode was decided asks nothing either
UPDATE atk_level SET v = 0;
SELECT herald.on_threshold('atk-late', 'SELECT v FROM public.atk_level', '>', 10, ARRAY['atk-hook'],
                           watch => ARRAY['atk_level'::regclass], warning_threshold => 5,
                           followup_after => '1 day');
UPDATE atk_level SET v = 6;
SELECT herald.flush();
SELECT herald.decide((SELECT id FROM herald.event_log WHERE rule = 'atk-late' AND type = 'rule.fired'),
                     'keep watching') > 0 AS decided;
UPDATE atk_level SET v = 11;
SELECT herald.flush();
BEGIN;
UPDATE herald.event_log SET created_at = created_at - interval '2 days'
 WHERE rule = 'atk-late' AND type = 'rule.escalated';
SELECT count(*) AS rounds FROM herald._send_followups(NULL);
COMMIT;
SELECT e.type, e.awaits_decision,
       (SELECT count(*) FROM herald.event_log f
         WHERE f.type = 'decision.followup' AND f.about_event_id = e.id) AS followups
  FROM herald.event_log e WHERE e.rule = 'atk-late' AND e.type LIKE 'rule.%' ORDER BY e.id;
SELECT herald.drop_rule('atk-late');

-- 2. A rule with choices offers no "Acknowledge": an answer through a
-- choice stops the episode's reminders
UPDATE atk_level SET v = 0;
SELECT herald.on_threshold('atk-remind', 'SELECT v FROM public.atk_level', '>', 10, ARRAY['atk-hook'],
                           watch => ARRAY['atk_level'::regclass], repeat_every => '1 hour',
                           choices => ARRAY['Roll back', 'Keep watching']);
UPDATE atk_level SET v = 11;
SELECT herald.flush();
SELECT state, acknowledged_at IS NOT NULL AS acknowledged FROM herald.rules WHERE name = 'atk-remind';
SELECT a ->> 'label' AS label FROM herald.event_log e, herald.rule_defs r, herald.channel_defs c,
       (SELECT * FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1) k,
       jsonb_array_elements(herald._actions(e, r, c, k.id, k.secret)) a
 WHERE e.rule = 'atk-remind' AND e.type = 'rule.fired' AND r.id = e.rule_id AND c.name = 'atk-hook';
SELECT herald.decide((SELECT id FROM herald.event_log WHERE rule = 'atk-remind' AND type = 'rule.fired'),
                     NULL, choice => 'Roll back') > 0 AS decided;
SELECT state, acknowledged_at IS NOT NULL AS acknowledged FROM herald.rules WHERE name = 'atk-remind';
SELECT next_check_at IS NULL AS no_reminder_due FROM herald.rule_instances
 WHERE rule_id = (SELECT id FROM herald.rule_defs WHERE name = 'atk-remind');
SELECT herald.drop_rule('atk-remind');

-- 3. Addresses: SMTP carries at most 254 bytes, and so does a link's
-- recipient.  Declaring a longer one is refused; one stored anyway (by
-- 0.1.0, or a superuser) is not named in the links, and the claim, which
-- signs the links of every channel at once, goes on for everyone.
SELECT test.error_of($$SELECT herald.create_channel('atk-mail', 'email', 'smtp://127.0.0.1:1', sender => 'h@example.com',
                                                   recipients => ARRAY[repeat('a', 243) || '@example.com'])$$);
SELECT herald.create_channel('atk-mail', 'email', 'smtp://127.0.0.1:1', sender => 'h@example.com',
                             recipients => ARRAY[repeat('a', 242) || '@example.com'], max_attempts => 1);
SELECT herald.drop_channel('atk-mail');
SELECT herald.create_channel('atk-mail', 'email', 'smtp://127.0.0.1:1', sender => 'h@example.com',
                             recipients => ARRAY['ann@example.com'], max_attempts => 1);
UPDATE herald.channel_defs SET recipients = ARRAY[repeat('a', 300) || '@example.com'] WHERE name = 'atk-mail';
CREATE TABLE atk_orders (id int);
SELECT herald.on_change('atk-row', 'atk_orders', ARRAY['atk-mail', 'atk-hook'], choices => ARRAY['Call', 'Ignore']);
INSERT INTO atk_orders VALUES (1);
SELECT herald.flush();
SELECT d.channel, d.status FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE e.rule = 'atk-row' ORDER BY d.channel;
SELECT l.status, l.recipient = '' AS nobody_in_particular
  FROM herald.event_log e, herald.rule_defs r, herald.channel_defs c,
       (SELECT * FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1) k,
       LATERAL herald._link_check(substring(herald._actions(e, r, c, k.id, k.secret) -> 0 ->> 'url'
                                            FROM '/d/([A-Za-z0-9_-]+)$')) l
 WHERE e.rule = 'atk-row' AND r.id = e.rule_id AND c.name = 'atk-mail';
SELECT herald.drop_rule('atk-row');
SELECT herald.drop_channel('atk-mail');

-- 4. A choice is at most 75 characters, the text a Slack button holds
SELECT test.error_of($$SELECT herald.on_change('atk-long', 'atk_orders', ARRAY['atk-hook'], choices => ARRAY[repeat('x', 76)])$$);
SELECT herald.on_change('atk-long', 'atk_orders', ARRAY['atk-hook'], choices => ARRAY[repeat('x', 75), repeat('é', 75)]);
SELECT herald.drop_rule('atk-long');

-- 5. Tokens with a field no link has (key, event or channel id 0 or
-- negative, action 0, a recipient length past the end, a NUL in the
-- recipient) are malformed whatever their MAC; a key id no key has is an
-- unknown key.  Each: version 1, key, event, action, channel, expiry,
-- recipient length, recipient, 32 bytes of MAC.
CREATE FUNCTION test.token_of(key_id bigint, event_id bigint, action int, channel_id bigint,
                              rlen int DEFAULT 0, recipient bytea DEFAULT '') RETURNS text
LANGUAGE sql AS $$
    SELECT rtrim(translate(encode(
               '\x01'::bytea || substring(int8send(key_id) FROM 5) || int8send(event_id)
               || set_byte('\x00'::bytea, 0, action) || substring(int8send(channel_id) FROM 5)
               || int8send(4102444800) || set_byte('\x00'::bytea, 0, rlen) || recipient
               || decode(repeat('ab', 32), 'hex'), 'base64'), E'+/\n', '-_'), '=')
$$;
SELECT t.what, (herald._link_check(t.token)).status
  FROM (VALUES ('well formed, unknown key', test.token_of(2147483647, 1, 1, 1)),
               ('key id 0', test.token_of(0, 1, 1, 1)),
               ('key id negative', test.token_of(4294967295, 1, 1, 1)),
               ('event id 0', test.token_of(1, 0, 1, 1)),
               ('event id negative', test.token_of(1, -1, 1, 1)),
               ('action 0', test.token_of(1, 1, 0, 1)),
               ('channel id 0', test.token_of(1, 1, 1, 0)),
               ('channel id negative', test.token_of(1, 1, 1, 4294967295)),
               ('recipient longer than the token', test.token_of(1, 1, 1, 1, 5, 'ab')),
               ('recipient of 255 bytes', test.token_of(1, 1, 1, 1, 255, decode(repeat('61', 255), 'hex'))),
               ('NUL in the recipient', test.token_of(1, 1, 1, 1, 3, '\x610062'))) AS t(what, token);

ALTER SYSTEM RESET herald.public_url;
SELECT pg_reload_conf();
SELECT herald.drop_channel('atk-hook');
DROP TABLE atk_level, atk_orders;
