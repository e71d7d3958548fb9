-- The delivery worker keeps what a row event's delivery takes of its channel
-- and of its rule between batches: each change to either counts from the
-- next event on, whoever makes it (alter_channel, alter_rule, a DBA's
-- UPDATE of herald.channel_defs), in its transaction or before.  A statement whose rows go to
-- several channels, some of rules offering actions, gives every delivery.
\set SHOW_CONTEXT never
CREATE TABLE cached (id int PRIMARY KEY, note text);
SELECT herald.create_channel('cache-a', 'webhook', test.url('/cache/a'),
                             secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                             headers => '{"X-One": "1"}');
SELECT herald.create_channel('cache-b', 'webhook', test.url('/cache/b'));
SELECT herald.on_change('cache-rule', 'cached', ARRAY['cache-a', 'cache-b'], ARRAY['INSERT'],
                        message => 'first {{new.id}}');
INSERT INTO cached VALUES (1, 'one');
SELECT herald.flush('30 seconds');

-- the channel moved, took other headers and a new secret (the old one
-- signs as well for a day); the rule took another template
SELECT herald.alter_channel('cache-a', target => test.url('/cache/a2'),
                            headers => '{"X-One": "2", "X-Two": "two"}',
                            secret => 'whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIHRlc3Rz');
SELECT herald.alter_rule('cache-rule', message => 'second {{new.id}}');
INSERT INTO cached VALUES (2, 'two');
SELECT herald.flush('30 seconds');

-- the rule now goes to one channel only: so do its next events
SELECT herald.alter_rule('cache-rule', channels => ARRAY['cache-a']);
SELECT herald.drop_channel('cache-b');
INSERT INTO cached VALUES (3, 'three');
SELECT herald.flush('30 seconds');

-- a change made in the transaction that writes the event counts for it
BEGIN;
SELECT herald.alter_channel('cache-a', target => test.url('/cache/a3'));
SELECT herald.alter_rule('cache-rule', message => 'third {{new.id}}');
INSERT INTO cached VALUES (5, 'five');
COMMIT;
SELECT herald.flush('30 seconds');

-- a header of another type, put in by hand (create_channel() refuses it)
UPDATE herald.channel_defs SET headers = '{"X-Num": 5, "X-Two": "zwei"}' WHERE name = 'cache-a';
INSERT INTO cached VALUES (4, 'four');
SELECT herald.flush('30 seconds');

SELECT r ->> 'path' AS path,
       r -> 'headers' ->> 'x-one' AS x_one, r -> 'headers' ->> 'x-two' AS x_two,
       r -> 'headers' ->> 'x-num' AS x_num,
       (r ->> 'body')::jsonb #>> '{data,new,id}' AS row_id,
       (r ->> 'body')::jsonb #>> '{data,message}' AS message,
       array_length(string_to_array(r -> 'headers' ->> 'webhook-signature', ' '), 1) AS signatures,
       -- the webhook-id: the SQL function's, of the event's delivery
       herald.webhook_id(split_part(r -> 'headers' ->> 'webhook-id', '_', 3)::bigint)
           = r -> 'headers' ->> 'webhook-id' AS webhook_id,
       split_part(r -> 'headers' ->> 'webhook-id', '_', 3)::bigint / 1000000
           = ((r ->> 'body')::jsonb #>> '{data,event_id}')::bigint AS of_event
  FROM test.received('/cache/') r
 WHERE r ->> 'path' NOT LIKE '/cache/c%'
 ORDER BY row_id, path;

-- one statement, rows for a plain rule and for one offering choices on the
-- same channel, past the channel's concurrency: each row's delivery, once
SELECT herald.create_channel('cache-c', 'webhook', test.url('/cache/c'), max_concurrency => 2);
SELECT herald.on_change('cache-plain', 'cached', ARRAY['cache-c'], ARRAY['UPDATE']);
SELECT herald.on_change('cache-choices', 'cached', ARRAY['cache-c'], ARRAY['UPDATE'],
                        choices => ARRAY['Seen', 'Ignore']);
-- (those past the concurrency wait in the queue and go as soon as there
-- is room, well before the worker's 10-second idle recheck of the queue)
UPDATE cached SET note = note || '!';
SELECT herald.flush('8 seconds');
SELECT e.rule, count(*) AS received, count(DISTINCT r -> 'headers' ->> 'webhook-id') AS distinct_ids
  FROM test.received('/cache/c') r
  JOIN herald.events e ON e.id = ((r ->> 'body')::jsonb #>> '{data,event_id}')::bigint
 GROUP BY e.rule ORDER BY e.rule;
SELECT rule, status, count(*) FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE d.channel = 'cache-c' GROUP BY rule, status ORDER BY rule;

SELECT herald.drop_rule('cache-rule'), herald.drop_rule('cache-plain'), herald.drop_rule('cache-choices');
SELECT herald.drop_channel('cache-a'), herald.drop_channel('cache-c');
DROP TABLE cached;
