-- Deciding from the message, the SQL side: choices are checked when a rule
-- is declared; every message that awaits a decision gets signed links, one
-- per action; a link proves what it binds and nothing else; decisions from
-- every path go through one function, once per request, and are announced.
\set SHOW_CONTEXT never
ALTER SYSTEM SET herald.public_url = 'https://decide.example/';
SELECT pg_reload_conf(), pg_sleep(0.3);
SELECT current_setting('herald.public_url') AS public_url, herald._link_base() AS link_base;

SELECT herald.create_channel('links-hook', 'webhook', test.url('/links'));
SELECT herald.create_channel('links-mail', 'email', 'smtp://127.0.0.1:1', sender => 'herald@example.com',
                             recipients => ARRAY['ann@example.com']);
SELECT herald.create_channel('links-team', 'email', 'smtp://127.0.0.1:1', sender => 'herald@example.com',
                             recipients => ARRAY['ann@example.com', 'bob@example.com']);
-- the deliveries to the mail channels are not the point here
SELECT herald.alter_channel('links-mail', enabled => false);
SELECT herald.alter_channel('links-team', enabled => false);
CREATE TABLE signups (id int PRIMARY KEY, plan text);

-- choices: 1 to 10 distinct labels of 1 to 75 characters
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => '{}')$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY['a','b','c','d','e','f','g','h','i','j','k'])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY['Keep', 'keep'])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY['Keep', NULL])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY[' Keep'])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY[repeat('x', 81)])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY[E'a\nb'])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], choices => ARRAY[['a'],['b']])$$);
SELECT test.error_of($$SELECT herald.on_change('c1', 'signups', ARRAY['links-hook'], announce_decisions => NULL)$$);
SELECT test.error_of($$SELECT herald.on_threshold('c1', 'SELECT 1', '>', 0, ARRAY['links-hook'], every => '1 hour', choices => ARRAY['x', 'X'])$$);
SELECT count(*) AS rules_stored FROM herald.rules WHERE name = 'c1';
-- slack_signing_secret: slack channels only, the shape Slack gives
SELECT test.error_of($$SELECT herald.create_channel('s1', 'webhook', 'https://example.com/x', slack_signing_secret => 'abcdef0123456789abcdef')$$);
SELECT test.error_of($$SELECT herald.create_channel('s1', 'slack', 'https://hooks.slack.com/services/T/B/x', slack_signing_secret => 'short')$$);
SELECT test.error_of($$SELECT herald.create_channel('s1', 'slack', 'https://hooks.slack.com/services/T/B/x', slack_signing_secret => 'abc def 0123456789abcdef')$$);
SELECT herald.create_channel('links-slack', 'slack', 'https://hooks.slack.com/services/T/B/x',
                             slack_signing_secret => '8f742231b10e8888abcd99yyyzzz85a5');
SELECT name, kind FROM herald.channels WHERE name = 'links-slack';
SELECT count(*) AS signing_secret_shown FROM herald.channels c
 WHERE to_jsonb(c)::text LIKE '%8f742231b10e%';
SELECT herald.alter_channel('links-slack', slack_signing_secret => '');
SELECT slack_signing_secret IS NULL AS interactivity_off FROM herald.channel_defs WHERE name = 'links-slack';
SELECT herald.drop_channel('links-slack');

SELECT herald.on_change('signup-plans', 'signups', ARRAY['links-hook', 'links-mail', 'links-team'],
                        operations => '{INSERT}', condition => 'NEW.id = 1',
                        choices => ARRAY['Call them', 'Send the guide', 'Ignore']);
SELECT herald.on_change('signup-plain', 'signups', ARRAY['links-hook'], operations => '{INSERT}',
                        condition => $$NEW.plan = 'enterprise'$$, followup_after => '1 hour');
SELECT herald.on_change('signup-quiet', 'signups', ARRAY['links-hook'], operations => '{INSERT}',
                        condition => $$NEW.plan = 'free'$$);
INSERT INTO signups VALUES (1, 'enterprise'), (2, 'free');
SELECT herald.flush();

-- the actions of each event on each of its channels, tokens masked
CREATE FUNCTION test.actions(ev bigint, channel text) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT herald._actions(e, r, c, k.id, k.secret)
      FROM herald.event_log e LEFT JOIN herald.rule_defs r ON r.id = e.rule_id,
           herald.channel_defs c,
           (SELECT * FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1) k
     WHERE e.id = ev AND c.name = channel
$$;
CREATE FUNCTION test.token(url text) RETURNS text
LANGUAGE sql AS $$ SELECT substring(url FROM '/d/([A-Za-z0-9_-]+)$') $$;
SELECT e.rule, a ->> 'id' AS id, a ->> 'label' AS label,
       regexp_replace(a ->> 'url', '/d/[A-Za-z0-9_-]+$', '/d/TOKEN') AS url
  FROM herald.events e, jsonb_array_elements(test.actions(e.id, 'links-hook')) a
 ORDER BY e.id, a ->> 'id';
-- a rule without choices or follow-ups asks nothing
SELECT e.rule, test.actions(e.id, 'links-hook') AS actions
  FROM herald.events e WHERE e.rule = 'signup-quiet';

-- what a link binds: the event, the action, the channel, the recipient (the
-- address of a single-recipient email channel, else nobody in particular)
SELECT ch, l.status, l.event_id = e.id AS event, l.action,
       l.channel_id = (SELECT id FROM herald.channel_defs WHERE name = ch) AS channel,
       l.recipient, l.expires_at BETWEEN now() + interval '7 days' - interval '1 minute'
                                     AND now() + interval '7 days' + interval '1 minute' AS expires_in_7_days
  FROM herald.events e, unnest(ARRAY['links-hook', 'links-mail', 'links-team']) AS ch,
       LATERAL herald._link_check(test.token(test.actions(e.id, ch) -> 1 ->> 'url')) l
 WHERE e.rule = 'signup-plans'
 ORDER BY ch;
-- the links of every channel differ; the URLs are those a receiver can open
SELECT count(DISTINCT a ->> 'url') AS distinct_urls,
       bool_and(a ->> 'url' ~ '^https://decide\.example/d/[A-Za-z0-9_-]{79,}$') AS well_formed
  FROM herald.events e, unnest(ARRAY['links-hook', 'links-mail', 'links-team']) AS ch,
       jsonb_array_elements(test.actions(e.id, ch)) a
 WHERE e.rule = 'signup-plans';

-- anything changed in a token is refused
CREATE TABLE test.link AS
SELECT test.token(test.actions(e.id, 'links-mail') -> 0 ->> 'url') AS token
  FROM herald.events e WHERE e.rule = 'signup-plans';
SELECT (herald._link_check(token)).status AS genuine FROM test.link;
-- ('A' and 'E' both leave the last character's padding bits zero: the
-- token stays canonical base64url wherever the change is)
SELECT i AS flipped_at, (herald._link_check(overlay(token PLACING
            CASE WHEN substr(token, i, 1) = 'A' THEN 'E' ELSE 'A' END FROM i FOR 1))).status
  FROM test.link, unnest(ARRAY[1, 3, 12, 20, 30, length(token) - 5, length(token)]) AS i
 ORDER BY i;
SELECT (herald._link_check(token || 'A')).status AS longer,
       (herald._link_check(left(token, -1))).status AS shorter,
       (herald._link_check(left(token, 40))).status AS cut,
       (herald._link_check(translate(token, '-_', '+/') || '+')).status AS base64_not_url,
       (herald._link_check(token || '=')).status AS padded,
       (herald._link_check('')).status AS empty,
       (herald._link_check(repeat('A', 5000))).status AS huge,
       (herald._link_check(NULL)).status AS null
  FROM test.link;

-- keys: rotating keeps old links opening; revoking stops them
SET ROLE herald_admin;
SELECT count(*) FROM herald.link_keys;
RESET ROLE;
SELECT herald.rotate_link_key() > 1 AS rotated;
SELECT (herald._link_check(token)).status AS after_rotation FROM test.link;
SELECT count(*) AS keys, count(*) FILTER (WHERE retired_at IS NULL) AS signing FROM herald.link_keys;
SELECT herald.rotate_link_key(revoke => true) > 1 AS revoked;
SELECT (herald._link_check(token)).status AS after_revocation FROM test.link;
SELECT count(*) AS keys FROM herald.link_keys;

-- who may call what: the workers' functions are not the authors'
SELECT p.oid::regprocedure AS function,
       has_function_privilege('herald_author', p.oid, 'EXECUTE') AS author,
       has_function_privilege('herald_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('herald_http', p.oid, 'EXECUTE') AS http
  FROM pg_proc p
 WHERE p.pronamespace = 'herald'::regnamespace
   AND p.proname IN ('_link', '_link_check', '_record_decision', '_actions', 'rotate_link_key')
 ORDER BY 1;

-- deciding with a choice: the choice must be the rule's
CREATE TABLE test.plans AS SELECT id FROM herald.events WHERE rule = 'signup-plans';
SELECT test.error_of($$SELECT herald.decide((SELECT id FROM test.plans), NULL, choice => 'Call them later')$$);
SELECT test.error_of($$SELECT herald.decide((SELECT id FROM herald.events WHERE rule = 'signup-plain'), 'x', choice => 'Ignore')$$);
SELECT test.error_of($$SELECT herald.decide((SELECT id FROM test.plans), NULL)$$);
SELECT test.error_of($$SELECT herald.decide((SELECT id FROM test.plans), 'x', action_due => '1900-01-01')$$);
SELECT herald.decide((SELECT id FROM test.plans), NULL, choice => 'Call them',
                     action => 'call before noon', action_owner => 'bob', action_due => '2026-12-04') > 0 AS decided;
SELECT rule, kind, choice, decision, action, action_owner, action_due, identified_by, decided_by, channel
  FROM herald.decisions WHERE rule = 'signup-plans';

-- one function records every way: a repeated request (the same
-- request_key) records nothing more
SELECT herald._record_decision(e, 'acknowledgement', NULL, 'ann@example.com', 'herald_http', 'link',
                               actor_id => 'ann@example.com', request_key => 'form:1',
                               channel_id => (SELECT id FROM herald.channel_defs WHERE name = 'links-mail')) > 0 AS first,
       herald._record_decision(e, 'acknowledgement', NULL, 'ann@example.com', 'herald_http', 'link',
                               request_key => 'form:1') IS NULL AS repeat_records_nothing
  FROM herald.event_log e WHERE e.id = (SELECT id FROM test.plans);
SELECT kind, identified_by, decided_by, actor_id, channel FROM herald.decisions
 WHERE rule = 'signup-plans' ORDER BY id;

-- each decision is announced on the rule's channels, once
SELECT herald.flush();
SELECT e.payload ->> 'kind' AS kind, e.payload ->> 'choice' AS choice,
       e.payload ->> 'identified_by' AS identified_by, e.payload ->> 'channel' AS channel,
       e.about_event_id = (SELECT id FROM test.plans) AS about_the_event,
       (SELECT count(*) FROM herald.deliveries d WHERE d.event_id = e.id) AS deliveries
  FROM herald.event_log e WHERE e.type = 'decision.recorded' AND e.rule = 'signup-plans'
 ORDER BY e.id;
-- an announcement is about the episode: answering it answers the event, and
-- it offers no actions of its own
SELECT (herald._episode(max(id))).id = (SELECT id FROM test.plans) AS episode,
       test.actions(max(id), 'links-hook') AS actions
  FROM herald.event_log WHERE type = 'decision.recorded';

-- announce_decisions => false: nothing announced, except to a Slack
-- channel whose message is to be updated
SELECT herald.on_change('signup-silent', 'signups', ARRAY['links-hook'], operations => '{INSERT}',
                        condition => $$NEW.plan = 'team'$$, choices => ARRAY['OK'],
                        announce_decisions => false);
INSERT INTO signups VALUES (3, 'team');
SELECT herald.flush();
SELECT herald.decide((SELECT id FROM herald.events WHERE rule = 'signup-silent'), NULL, choice => 'OK') > 0 AS decided;
SELECT count(*) AS announced FROM herald.events WHERE rule = 'signup-silent' AND type = 'decision.recorded';

-- follow-ups stop once the episode is decided; the timeline says who and how
SELECT kind, regexp_replace(detail, '\d+', 'N', 'g') AS detail FROM herald.timeline
 WHERE event_id = (SELECT id FROM test.plans) AND kind IN ('decision', 'acknowledgement')
 ORDER BY at;
SELECT rule, by_choice, by_channel FROM herald.decision_report(now() - interval '1 hour', now() + interval '1 hour')
 WHERE rule LIKE 'signup-%' ORDER BY rule;

-- no public URL (and no herald.http_listen): no links
ALTER SYSTEM SET herald.public_url = '';
SELECT pg_reload_conf(), pg_sleep(0.3);
SELECT herald._link_base() IS NULL AS no_base, test.actions((SELECT id FROM test.plans), 'links-hook') AS actions;
ALTER SYSTEM RESET herald.public_url;
SELECT pg_reload_conf();

SELECT herald.drop_rule(r) FROM unnest(ARRAY['signup-plans', 'signup-plain', 'signup-quiet', 'signup-silent']) r;
