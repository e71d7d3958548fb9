-- Channel formats: Slack, Microsoft Teams, Google Chat, email, notify, with
-- templates; golden payloads, hostile data, test_channel, alter_channel and
-- secret rotation, validation errors.
\set SHOW_CONTEXT never

-- Times (to the second, or to the minute as facts show them), event ids
-- and webhook ids vary from run to run.  (Quoted-printable
-- soft line breaks, which move with them, are joined first.)
CREATE FUNCTION test.mask(t text) RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        replace(t, E'=\r\n', ''),
        '\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|\+00(:00)?)?', 'TIME', 'g'),
        '(event |event_id": |X-Herald-Event: )\d+', '\1N', 'g'),
        '(msg_|pg_herald-)\d+[_-]\d+', '\1N', 'g'),
        '[A-Z][a-z][a-z], \d{1,2} [A-Z][a-z][a-z] \d{4} \d\d:\d\d:\d\d \+0000', 'DATE', 'g'),
        '(Ticket |tickets/|herald\.acknowledge\(|herald\.decide\()\d+', '\1N', 'g')
$$;
-- A received JSON body, masked and pretty.
CREATE FUNCTION test.body(r jsonb) RETURNS text
LANGUAGE sql AS $$ SELECT test.mask(jsonb_pretty((r ->> 'body')::jsonb)) $$;

CREATE TABLE tickets (id int PRIMARY KEY, title text, body text, amount numeric);
SELECT herald.create_channel('slack', 'slack', test.url('/formats/slack'), rate_limit => 1000);
SELECT herald.create_channel('teams', 'teams', test.url('/formats/teams'));
SELECT herald.create_channel('chat', 'google_chat', test.url('/formats/chat?key=k&token=t'),
                             rate_limit => 1000);
SELECT herald.create_channel('mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['ops@example.com', 'cfo@example.com'],
                             sender => 'herald@example.com',
                             subject => '[{{rule}}] {{type}} ({{table}}{{key}})');
SELECT herald.create_channel('bus', 'notify', 'herald_events');
SELECT herald.create_channel('default-rates', 'slack', 'https://hooks.slack.example/T/B/x');
SELECT herald.create_channel('default-rates-chat', 'google_chat', 'https://chat.example/v1/spaces/s/messages?key=k');
SELECT name, kind, rate_limit, secret IS NOT NULL AS has_secret
  FROM herald.channels WHERE name IN ('slack', 'teams', 'chat', 'mail', 'bus', 'default-rates', 'default-rates-chat')
 ORDER BY id;
SELECT herald.drop_channel('default-rates');
SELECT herald.drop_channel('default-rates-chat');

-------------------------------------------------------------------------------
-- Golden payloads of a row event, one per kind.
-------------------------------------------------------------------------------
SELECT herald.on_change('ticket', 'tickets', ARRAY['slack', 'teams', 'chat', 'mail', 'bus'],
                        ARRAY['INSERT'],
                        message => 'Ticket {{new.id}}: {{new.title}}, see https://example.com/tickets/{{new.id}}.');
INSERT INTO tickets VALUES (1, 'Printer on fire', 'Third floor', 12.5);
SELECT herald.flush();
SELECT channel, status, attempts, last_status FROM herald.deliveries
 WHERE channel IN ('slack', 'teams', 'chat', 'mail', 'bus') ORDER BY channel;
SELECT test.body(r) AS slack FROM test.received('/formats/slack') r;
SELECT test.body(r) AS teams FROM test.received('/formats/teams') r;
SELECT r ->> 'query' AS query, test.body(r) AS chat FROM test.received('/formats/chat') r;
SELECT m ->> 'mail_from' AS mail_from, m -> 'rcpt_tos' AS rcpt_tos FROM test.mails() m;
SELECT test.mask(m ->> 'data') AS email FROM test.mails() m;

-------------------------------------------------------------------------------
-- A threshold event: facts, thread key per instance, sparkline.
-------------------------------------------------------------------------------
CREATE TABLE queue_depth (shop text, depth int);
INSERT INTO queue_depth VALUES ('paris', 10);
SELECT herald.on_threshold('deep-queue', 'SELECT shop, depth FROM queue_depth', '>', 100,
                           ARRAY['chat', 'slack'], watch => ARRAY['queue_depth'::regclass],
                           message => '{{key}} queue at {{value}} ({{level}}) {{sparkline}}');
SELECT herald.flush();
UPDATE queue_depth SET depth = 50;
SELECT herald.flush();
UPDATE queue_depth SET depth = 200;
SELECT herald.flush();
UPDATE queue_depth SET depth = 5;
SELECT herald.flush();
SELECT test.mask((r ->> 'body')::jsonb -> 'thread' ->> 'threadKey') AS thread,
       test.mask((r ->> 'body')::jsonb ->> 'text') AS text
  FROM test.received('/formats/chat') r WHERE (r ->> 'body') LIKE '%deep-queue%';
SELECT test.body(r) AS slack_fired FROM test.received('/formats/slack') r
 WHERE (r ->> 'body')::jsonb ->> 'text' LIKE '%deep-queue%firing%';
SELECT herald.drop_rule('deep-queue');

-------------------------------------------------------------------------------
-- Hostile data: every payload stays valid, escaped and within its limit.
-------------------------------------------------------------------------------
INSERT INTO tickets VALUES
    (2, 'quotes " '' and \ backslash', '<script>alert(1)</script> & <b>', 1),
    (3, E'new\nlines\r\nand\ttabs', 'emoji 🔥🚀 and ünïcödé', 2),
    (4, repeat('x', 100000), repeat('<&>', 30000), 3),
    (5, E'\u0001\u0002\u001f control', E'\u00e9\u00e8\u2028\u2029', 4);
SELECT herald.flush('30 seconds');
SELECT channel, status, count(*) FROM herald.deliveries
 WHERE channel IN ('slack', 'teams', 'chat', 'mail', 'bus') GROUP BY 1, 2 ORDER BY 1, 2;

-- Slack: every text escaped (no raw < or >), sections within 3,000 characters
SELECT b -> 'blocks' -> 1 -> 'text' ->> 'text' AS section
  FROM (SELECT (r ->> 'body')::jsonb AS b FROM test.received('/formats/slack') r) s
 WHERE b ->> 'text' LIKE '%Ticket 2%';
SELECT bool_and(length(blk -> 'text' ->> 'text') <= 3000
                AND (blk -> 'text' ->> 'text') !~ '[<>]') AS sections_escaped_and_short,
       bool_and(length(b ->> 'text') <= 3000) AS fallback_short,
       bool_or((b ->> 'text') LIKE '%[truncated]%') AS marker_shown
  FROM (SELECT (r ->> 'body')::jsonb AS b FROM test.received('/formats/slack') r) s,
       jsonb_array_elements(b -> 'blocks') blk
 WHERE blk ->> 'type' = 'section' AND blk ? 'text';
-- Teams: under 28 KB, a valid Adaptive Card
SELECT max(octet_length(r ->> 'body')) < 28000 AS under_28kb,
       bool_and((r ->> 'body')::jsonb #>> '{attachments,0,content,version}' = '1.4') AS card_1_4
  FROM test.received('/formats/teams') r;
-- Google Chat: under 32,000 bytes
SELECT max(octet_length(r ->> 'body')) < 32000 AS under_32000_bytes
  FROM test.received('/formats/chat') r;
-- the exact text survives the round trip where it fits
SELECT (r ->> 'body')::jsonb ->> 'text' LIKE '%emoji 🔥🚀%' AS emoji_kept
  FROM test.received('/formats/chat') r WHERE r ->> 'body' LIKE '%Ticket 3%';
SELECT b -> 'attachments' -> 0 -> 'content' -> 'body' -> 1 ->> 'text' AS teams_text
  FROM (SELECT (r ->> 'body')::jsonb AS b FROM test.received('/formats/teams') r) s
 WHERE b::text LIKE '%Ticket 2%';
-- email: the HTML part is escaped (the plain text part is plain text)
SELECT html LIKE '%&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;%' AS html_escaped,
       html NOT LIKE '%<script>%' AND html NOT LIKE '%<b>%' AS no_raw_markup
  FROM (SELECT replace(split_part(m ->> 'data', 'Content-Type: text/html', 2), E'=\r\n', '') AS html
          FROM test.mails() m) p
 WHERE html LIKE '%Ticket 2%';
SELECT count(*) AS mails, bool_and(m ->> 'data' LIKE '%Content-Type: multipart/alternative%') AS mime
  FROM test.mails() m;

-------------------------------------------------------------------------------
-- test_channel sends channel.test through the whole path.
-------------------------------------------------------------------------------
SELECT herald.test_channel('teams') > 0 AS queued;
SELECT herald.flush();
SELECT d.status, e.type, e.payload ->> 'channel' AS channel
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE e.type = 'channel.test';
SELECT (r ->> 'body')::jsonb #>> '{attachments,0,content,body,0,text}' AS title,
       (r ->> 'body')::jsonb #>> '{attachments,0,content,body,1,text}' AS text
  FROM test.received('/formats/teams') r WHERE r ->> 'body' LIKE '%channel.test%' OR r ->> 'body' LIKE '%Test message%';

-------------------------------------------------------------------------------
-- alter_channel: settings, and a secret rotation signing with both secrets.
-------------------------------------------------------------------------------
SELECT herald.create_channel('rotating', 'webhook', test.url('/formats/rotating'),
                             secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT herald.alter_channel('rotating', secret => 'whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIHRlc3Rz',
                            max_attempts => 3, rate_limit => 50);
SELECT kind, max_attempts, rate_limit, previous_secret IS NOT NULL AS rotating,
       previous_secret_until > now() + interval '23 hours' AS for_a_day
  FROM herald.channel_defs WHERE name = 'rotating';
SELECT herald.test_channel('rotating') > 0 AS queued;
SELECT herald.flush();
SELECT array_length(string_to_array(r -> 'headers' ->> 'webhook-signature', ' '), 1) AS signatures,
       string_to_array(r -> 'headers' ->> 'webhook-signature', ' ') @> ARRAY[
           herald.webhook_signature(r -> 'headers' ->> 'webhook-id',
                                    (r -> 'headers' ->> 'webhook-timestamp')::bigint,
                                    r ->> 'body', 'whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIHRlc3Rz'),
           herald.webhook_signature(r -> 'headers' ->> 'webhook-id',
                                    (r -> 'headers' ->> 'webhook-timestamp')::bigint,
                                    r ->> 'body', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')]
           AS both_secrets_sign
  FROM test.received('/formats/rotating') r;
-- disable, refuse tests, enable again
SELECT herald.alter_channel('rotating', enabled => false);
SELECT test.error_of($$SELECT herald.test_channel('rotating')$$);
SELECT herald.alter_channel('rotating', enabled => true);
SELECT enabled, disabled_reason FROM herald.channels WHERE name = 'rotating';

-------------------------------------------------------------------------------
-- Validation: each error says what is wrong; nothing is stored.
-------------------------------------------------------------------------------
\set VERBOSITY default
SELECT herald.create_channel('x', 'fax', 'http://127.0.0.1/');
SELECT herald.create_channel('x', 'slack', 'smtp://127.0.0.1/');
SELECT herald.create_channel('x', 'slack', 'https://hooks.slack.example/x', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT herald.create_channel('x', 'email', 'https://mail.example/');
SELECT herald.create_channel('x', 'email', 'smtp://127.0.0.1:25', sender => 'a@example.com');
SELECT herald.create_channel('x', 'email', 'smtp://127.0.0.1:25', recipients => ARRAY['ops@example.com']);
SELECT herald.create_channel('x', 'email', 'smtp://127.0.0.1:25', recipients => ARRAY[E'ops@example.com\r\nBcc: all@example.com'], sender => 'a@example.com');
SELECT herald.create_channel('x', 'email', 'smtp://127.0.0.1:25', recipients => ARRAY['not an address'], sender => 'a@example.com');
SELECT herald.create_channel('x', 'email', 'smtp://127.0.0.1:25', recipients => ARRAY['ops@example.com'], sender => 'a@example.com', subject => '{{new.id}}');
SELECT herald.create_channel('x', 'email', 'smtp://127.0.0.1:25', recipients => ARRAY['ops@example.com'], sender => 'a@example.com', subject => '{{nope}}');
SELECT herald.create_channel('x', 'teams', 'https://teams.example/x', recipients => ARRAY['ops@example.com']);
SELECT herald.create_channel('x', 'notify', '');
SELECT herald.create_channel('x', 'notify', repeat('n', 64));
SELECT herald.create_channel('x', 'notify', 'events', headers => '{"X-A": "b"}');
SELECT herald.create_channel('x', 'webhook', 'file:///etc/passwd');
SELECT herald.create_channel('x', 'webhook', 'gopher://127.0.0.1/');
SELECT herald.create_channel('x', 'webhook', 'ftp://127.0.0.1/');
SELECT herald.alter_channel('no-such-channel', max_attempts => 1);
SELECT herald.alter_channel('slack', max_attempts => 0);
SELECT herald.alter_channel('rotating', secret => 'not-a-secret');
SELECT herald.test_channel('no-such-channel');
\set VERBOSITY terse
SELECT count(*) AS channels_named_x FROM herald.channels WHERE name = 'x';

-- clean up for the tests that follow
SELECT herald.drop_rule('ticket');
SELECT herald.drop_channel(name) FROM herald.channels
 WHERE name IN ('slack', 'teams', 'chat', 'mail', 'bus', 'rotating');
