-- Slack interactivity, the SQL side (slack.c calls it; test/t/024_slack.pl
-- posts real signed requests): herald._slack_verify() says which Slack
-- channels' signing secrets signed a request, herald._slack_decide()
-- records a click as the Slack user.  Both are the HTTP worker's alone.
-- Tokens and signatures are computed here independently of pg_herald: an
-- HMAC-SHA256 in SQL over the documented formats.
\set SHOW_CONTEXT never

-- HMAC-SHA256 (RFC 2104) from sha256()
CREATE FUNCTION test.hmac_sha256(key bytea, msg bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    WITH k AS (SELECT CASE WHEN length(key) > 64 THEN sha256(key) ELSE key END AS k),
         padded AS (SELECT k || decode(repeat('00', 64 - length(k)), 'hex') AS k FROM k),
         pads AS (SELECT string_agg(set_byte('\x00'::bytea, 0, get_byte(k, i) # 54), ''::bytea ORDER BY i) AS ipad,
                         string_agg(set_byte('\x00'::bytea, 0, get_byte(k, i) # 92), ''::bytea ORDER BY i) AS opad
                    FROM padded, generate_series(0, 63) AS i)
    SELECT sha256(opad || sha256(ipad || msg)) FROM pads
$$;
-- RFC 4231, test case 2
SELECT encode(test.hmac_sha256('Jefe', 'what do ya want for nothing?'), 'hex')
       = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' AS hmac_ok;

-- Slack's X-Slack-Signature for a timestamp and a body
CREATE FUNCTION test.slack_signature(secret text, ts text, body text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'v0=' || encode(test.hmac_sha256(convert_to(secret, 'UTF8'),
                                            convert_to('v0:' || ts || ':' || body, 'UTF8')), 'hex')
$$;

-- A decision link's token (links.c): base64url of version 1, key id, event,
-- action, channel, expiry, recipient, then the HMAC of all that
CREATE FUNCTION test.token(event_id bigint, action integer, channel text,
                           expires timestamptz DEFAULT now() + interval '1 hour',
                           key_id integer DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    WITH k AS (SELECT id, secret FROM herald.link_keys
                WHERE id = coalesce(key_id, (SELECT max(id) FROM herald.link_keys))),
         body AS (SELECT k.secret,
                         '\x01'::bytea || int4send(coalesce(key_id, k.id)) || int8send(event_id)
                         || set_byte('\x00'::bytea, 0, action)
                         || int4send((SELECT id FROM herald.channel_defs WHERE name = channel))
                         || int8send(floor(extract(epoch FROM expires))::bigint) || '\x00'::bytea AS b
                    FROM k RIGHT JOIN (SELECT 1) one ON true)
    SELECT rtrim(translate(encode(b || test.hmac_sha256(coalesce(secret, '\x00'::bytea),
                                                        convert_to('herald-link', 'UTF8') || '\x00'::bytea || b),
                                  'base64'), E'+/\n', '-_'), '=')
      FROM body
$$;

SELECT herald.create_channel('slack-ops', 'slack', test.url('/slack-ops'),
                             slack_signing_secret => 'opsSigningSecret0123456789abcdef');
SELECT herald.create_channel('slack-sales', 'slack', test.url('/slack-sales'),
                             slack_signing_secret => 'salesSigningSecret0123456789abcd');
-- the same app (the same secret) posts to two channels
SELECT herald.create_channel('slack-ops-2', 'slack', test.url('/slack-ops-2'),
                             slack_signing_secret => 'opsSigningSecret0123456789abcdef');
SELECT herald.create_channel('slack-plain', 'slack', test.url('/slack-plain'));
SELECT herald.create_channel('slack-hook', 'webhook', test.url('/slack-webhook'));
CREATE TABLE test.chan AS SELECT name, id FROM herald.channel_defs WHERE name LIKE 'slack-%';

CREATE TABLE slack_signups (id int PRIMARY KEY, plan text);
SELECT herald.on_change('signup-choice', 'slack_signups',
                        ARRAY['slack-ops', 'slack-sales', 'slack-plain', 'slack-hook', 'slack-ops-2'],
                        ARRAY['INSERT'], choices => ARRAY['Call them', 'Send a discount', 'Ignore']);
SELECT herald.on_change('signup-ack', 'slack_signups', ARRAY['slack-ops'], ARRAY['INSERT']);
INSERT INTO slack_signups VALUES (1, 'gold');
SELECT herald.flush();
CREATE TABLE test.ev AS
SELECT rule, id FROM herald.events WHERE rule LIKE 'signup-%' AND type = 'row.inserted';

-- only the HTTP worker's role may call them
SELECT p.oid::regprocedure AS function,
       has_function_privilege('herald_http', p.oid, 'EXECUTE') AS http,
       has_function_privilege('herald_author', p.oid, 'EXECUTE') AS author,
       has_function_privilege('herald_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       p.prosecdef AS security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'herald'::regnamespace AND p.proname LIKE '\_slack\_%'
 ORDER BY 1::text;
CREATE ROLE herald_slack_author IN ROLE herald_author;
GRANT USAGE ON SCHEMA test TO herald_slack_author;
SET ROLE herald_slack_author;
SELECT test.error_of($$SELECT herald._slack_verify('1', '\x00', 'v0=00')$$);
SELECT test.error_of($$SELECT herald._slack_decide('t', 'choice-1', ARRAY[1], 'U1', 'ann',
                                                   'https://hooks.slack.com/actions/x', 'slack:v0=0')$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA test FROM herald_slack_author;
DROP ROLE herald_slack_author;

-- the signature: the channels whose secret gives it, by id
CREATE TEMP TABLE req AS
SELECT '1700000000'::text AS ts, 'payload=%7B%22type%22%3A%22block_actions%22%7D'::text AS body;
CREATE TEMP TABLE sig AS
SELECT s.n, s.sig, s.what, r.ts, r.body
  FROM req r,
       LATERAL (VALUES
           (1, test.slack_signature('opsSigningSecret0123456789abcdef', r.ts, r.body), 'the ops app'),
           (2, test.slack_signature('salesSigningSecret0123456789abcd', r.ts, r.body), 'the sales app'),
           (3, test.slack_signature('anotherSecret0123456789abcdefghi', r.ts, r.body), 'an unknown secret'),
           (4, upper(test.slack_signature('opsSigningSecret0123456789abcdef', r.ts, r.body)), 'upper case'),
           (5, replace(test.slack_signature('opsSigningSecret0123456789abcdef', r.ts, r.body), 'v0=', 'v1='), 'another version'),
           (6, left(test.slack_signature('opsSigningSecret0123456789abcdef', r.ts, r.body), 60), 'cut short'),
           (7, test.slack_signature('opsSigningSecret0123456789abcdef', r.ts, r.body) || '0', 'one digit more'),
           (8, test.slack_signature('opsSigningSecret0123456789abcdef', '1700000001', r.body), 'another timestamp'),
           (9, test.slack_signature('opsSigningSecret0123456789abcdef', r.ts, r.body || '&x=1'), 'another body'),
           (10, '', 'empty')) AS s(n, sig, what);
GRANT SELECT ON sig TO herald_http;
SET ROLE herald_http;
CREATE TEMP TABLE verified AS
SELECT s.n, s.what, herald._slack_verify(s.ts, convert_to(s.body, 'UTF8'), s.sig) AS ids FROM sig s;
RESET ROLE;
SELECT v.what, (SELECT array_agg(c.name ORDER BY c.name) FROM test.chan c WHERE c.id = ANY (v.ids)) AS signed_by,
       cardinality(v.ids) AS n
  FROM verified v ORDER BY v.n;
SET ROLE herald_http;
SELECT herald._slack_verify(NULL, '\x00', 'v0=') IS NULL AS null_in_null_out;
RESET ROLE;

-- a click: recorded as the Slack user, announced, with the message's
-- response_url; nothing else is recorded until the status says so
CREATE FUNCTION test.click(token text, action_id text, channels text[],
                           user_id text DEFAULT 'U024BE7LH', user_name text DEFAULT 'ann',
                           response_url text DEFAULT test.url('/slack-response/T1/1/abc'),
                           request_key text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    d record;
    before bigint := (SELECT count(*) FROM herald.decision_log);
    ids integer[] := (SELECT array_agg(c.id) FROM test.chan c WHERE c.name = ANY (channels));
    k text := coalesce(request_key, 'slack:v0=' || encode(sha256(convert_to(
                  coalesce(token, '') || coalesce(action_id, '') || clock_timestamp(), 'UTF8')), 'hex'));
BEGIN
    SET LOCAL ROLE herald_http;
    SELECT * INTO d FROM herald._slack_decide(token, action_id, ids, user_id, user_name,
                                              response_url, k);
    RESET ROLE;
    RETURN d.status || CASE WHEN d.decision_id IS NOT NULL THEN ' (a decision id)' ELSE '' END
           || coalesce(', url ' || d.url, '')
           || format(', %s recorded', (SELECT count(*) FROM herald.decision_log) - before);
END
$$;

CREATE TABLE test.fixed_key AS
SELECT 'slack:v0=' || encode(sha256('one request'), 'hex') AS k;
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 2, 'slack-ops'),
                  'choice-2', ARRAY['slack-ops'], request_key => (SELECT k FROM test.fixed_key));
SELECT d.kind, d.decision, d.choice, d.decided_by, d.recorded_by, d.identified_by, d.actor_id,
       c.name AS channel, d.response_url = test.url('/slack-response/T1/1/abc') AS response_url,
       d.request_key = (SELECT k FROM test.fixed_key) AS keyed
  FROM herald.decision_log d JOIN herald.channel_defs c ON c.id = d.channel_id
 WHERE d.event_id = (SELECT id FROM test.ev WHERE rule = 'signup-choice');
-- the same request again records nothing
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 2, 'slack-ops'),
                  'choice-2', ARRAY['slack-ops'], request_key => (SELECT k FROM test.fixed_key));
-- decision.recorded goes to every channel of the rule; the one to the Slack
-- channel clicked in updates its message through the response_url
SELECT c.name AS channel,
       (SELECT replace(dl.response_url, test.url(''), 'RECEIVER') FROM herald.decision_log dl
         WHERE dl.id = (e.payload ->> 'decision_id')::bigint AND dl.channel_id = c.id) AS response_url,
       e.payload ->> 'decided_by' AS decided_by, e.payload ->> 'identified_by' AS identified_by,
       e.payload ->> 'choice' AS choice
  FROM herald.event_log e
  JOIN herald.deliveries q ON q.event_id = e.id
  JOIN herald.channel_defs c ON c.name = q.channel
 WHERE e.type = 'decision.recorded' AND e.about_event_id = (SELECT id FROM test.ev WHERE rule = 'signup-choice')
 ORDER BY c.name;
SELECT kind, detail FROM herald.timeline
 WHERE event_id = (SELECT id FROM test.ev WHERE rule = 'signup-choice') AND kind = 'decision';

-- the same app's secret vouches for its other channel too
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops-2'),
                  'choice-1', ARRAY['slack-ops', 'slack-ops-2']);

-- refused, nothing recorded: a token of a channel whose secret did not sign
-- the request, of a Slack channel without a signing secret, of a webhook
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-sales'),
                  'choice-1', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-plain'),
                  'choice-1', ARRAY['slack-ops', 'slack-plain']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-hook'),
                  'choice-1', ARRAY['slack-ops', 'slack-hook']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops'),
                  'choice-1', NULL);
-- tampered, expired, unknown key, not a token
SELECT test.click(overlay(t placing CASE WHEN substr(t, 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1),
                  'choice-1', ARRAY['slack-ops'])
  FROM test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops') t;
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops',
                             expires => now() - interval '1 minute'),
                  'choice-1', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops',
                             key_id => 999999),
                  'choice-1', ARRAY['slack-ops']);
SELECT test.click('not-a-token', 'choice-1', ARRAY['slack-ops']);
SELECT test.click('', 'choice-1', ARRAY['slack-ops']);
-- a button that does not say what its link says; a choice the rule no
-- longer offers; an event that is not there
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops'),
                  'choice-2', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops'),
                  'acknowledge', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 4, 'slack-ops'),
                  'choice-4', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT max(id) + 1000 FROM herald.event_log), 1, 'slack-ops'),
                  'choice-1', ARRAY['slack-ops']);
-- what Slack would never send: users, response URLs, request keys
SELECT s.what, test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 1, 'slack-ops'),
                          'choice-1', ARRAY['slack-ops'], user_id => s.user_id,
                          response_url => s.response_url, request_key => s.request_key) AS result
  FROM (VALUES
    ('user id with a space', 'U1 2', 'https://hooks.slack.com/actions/x', NULL),
    ('empty user id', '', 'https://hooks.slack.com/actions/x', NULL),
    ('no user id', NULL, 'https://hooks.slack.com/actions/x', NULL),
    ('no response_url', 'U1', NULL, NULL),
    ('plain http', 'U1', 'http://hooks.slack.com/actions/x', NULL),
    ('another scheme', 'U1', 'javascript:alert(1)', NULL),
    ('credentials in the URL', 'U1', 'https://user@hooks.slack.com/actions/x', NULL),
    ('a quote', 'U1', 'https://hooks.slack.com/actions/"x', NULL),
    ('a space', 'U1', 'https://hooks.slack.com/actions/ x', NULL),
    ('a newline', 'U1', E'https://hooks.slack.com/actions/\nx', NULL),
    ('not ASCII', 'U1', 'https://hooks.slack.com/actions/é', NULL),
    ('http to a name', 'U1', 'http://localhost.example.com/x', NULL),
    ('too long', 'U1', 'https://hooks.slack.com/' || repeat('a', 2000), NULL),
    ('a request key not of a signature', 'U1', 'https://hooks.slack.com/actions/x', 'slack:anything'),
    ('http to loopback (accepted: local tests)', 'U1', test.url('/slack-response/loopback'), NULL))
    AS s(what, user_id, response_url, request_key);
-- a name that is not a Slack handle: the user's id stands for it
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-choice'), 3, 'slack-ops'),
                  'choice-3', ARRAY['slack-ops'], user_id => 'W0ABC', user_name => s.name)
  FROM (VALUES ('<!channel> *bold*'), (repeat('a', 81)), (NULL), ('@bob')) AS s(name);
SELECT decided_by, choice FROM herald.decision_log
 WHERE event_id = (SELECT id FROM test.ev WHERE rule = 'signup-choice') AND choice = 'Ignore'
 ORDER BY id;

-- without choices: Acknowledge records an acknowledgement; "Record a
-- decision" needs a text a click has not: nothing is recorded, the answer
-- points to the decision page (no public URL here: no url)
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-ack'), 1, 'slack-ops'),
                  'acknowledge', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-ack'), 2, 'slack-ops'),
                  'decide', ARRAY['slack-ops']);
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-ack'), 3, 'slack-ops'),
                  'decide', ARRAY['slack-ops']);
SELECT kind, decision, choice, decided_by, identified_by FROM herald.decision_log
 WHERE event_id = (SELECT id FROM test.ev WHERE rule = 'signup-ack');
-- a dropped rule answers nothing more
SELECT herald.drop_rule('signup-ack');
SELECT test.click(test.token((SELECT id FROM test.ev WHERE rule = 'signup-ack'), 1, 'slack-ops'),
                  'acknowledge', ARRAY['slack-ops']);

SELECT herald.flush();
SELECT herald.drop_rule('signup-choice');
DROP TABLE slack_signups;
SELECT herald.drop_channel(name) FROM test.chan ORDER BY name;
DROP FUNCTION test.click(text, text, text[], text, text, text, text);
DROP TABLE test.ev, test.chan, test.fixed_key;
