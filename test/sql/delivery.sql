-- Delivery: signed webhooks, retries, dead deliveries, Retry-After,
-- timeouts, 410, redirects, redelivery, flush.
\set SHOW_CONTEXT never
CREATE TABLE payments (id int PRIMARY KEY, payer text, amount numeric);

-- the published Standard Webhooks test vector
SELECT herald.webhook_signature('msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
                                '{"test": 2432232314}',
                                'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')
       = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS matches_spec;

-- a signed webhook, with the channel's headers and the rendered message
SELECT herald.create_channel('pay', 'webhook', test.url('/delivery/ok'),
                             secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                             headers => '{"X-Team": "finance"}');
SELECT herald.on_change('payment', 'payments', ARRAY['pay'], ARRAY['INSERT'],
                        message => 'Payment {{new.id}} from {{new.payer}}: {{new.amount}} EUR ({{rule}}, {{type}})');
INSERT INTO payments VALUES (1, 'ann "the" <payer> & co', 12.50);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status, last_error FROM herald.deliveries WHERE channel = 'pay';
SELECT r ->> 'method' AS method,
       r -> 'headers' ->> 'content-type' AS content_type,
       r -> 'headers' ->> 'x-team' AS x_team,
       r -> 'headers' ->> 'user-agent' = 'pg_herald/' || (SELECT extversion FROM pg_extension WHERE extname = 'pg_herald') AS user_agent,
       r -> 'headers' ->> 'webhook-id' = d.webhook_id AS id_matches,
       (r -> 'headers' ->> 'webhook-timestamp')::bigint
           BETWEEN extract(epoch FROM now())::bigint - 300 AND extract(epoch FROM now())::bigint + 300 AS recent,
       ((r ->> 'body')::jsonb -> 'data' ->> 'event_id')::bigint = d.event_id AS event_matches,
       jsonb_pretty(((r ->> 'body')::jsonb - 'timestamp') #- '{data,event_id}') AS body
  FROM test.received('/delivery/ok') AS r, herald.deliveries d
 WHERE d.channel = 'pay';
-- the envelope timestamp is the event's time, in ISO 8601 UTC
SELECT ((r ->> 'body')::jsonb ->> 'timestamp')::timestamptz = e.created_at AS event_time
  FROM test.received('/delivery/ok') AS r, herald.events e WHERE e.rule = 'payment';
-- the signature, checked by pg_herald's function and by an independent implementation
SELECT herald.webhook_signature(r -> 'headers' ->> 'webhook-id',
                                (r -> 'headers' ->> 'webhook-timestamp')::bigint,
                                r ->> 'body', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')
       = r -> 'headers' ->> 'webhook-signature' AS signature_ok
  FROM test.received('/delivery/ok') AS r;
CREATE TEMP TABLE verified (line text);
DO $$
BEGIN
    EXECUTE format('COPY verified FROM PROGRAM %L',
                   format('python3 %s/verify_signature.py --log %s --secret %s --path-prefix /delivery/ok',
                          (SELECT dir FROM test.config), (SELECT log FROM test.config),
                          'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'));
END $$;
SELECT regexp_replace(line, '^[0-9]+ ', '') AS python_hmac FROM verified;
SELECT herald.drop_rule('payment');

-- 500 twice, then 200: delivered on the third try with the same webhook-id
SELECT herald.create_channel('flaky', 'webhook', test.url('/delivery/flaky?fail_first=2'),
                             retry_delay => '100 ms');
SELECT herald.on_change('flaky', 'payments', ARRAY['flaky'], ARRAY['INSERT']);
INSERT INTO payments VALUES (2, 'bob', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status, last_error FROM herald.deliveries WHERE channel = 'flaky';
SELECT a.attempt, a.http_status, a.error
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE d.channel = 'flaky' ORDER BY a.attempt;
SELECT count(*) AS requests, count(DISTINCT r -> 'headers' ->> 'webhook-id') AS webhook_ids
  FROM test.received('/delivery/flaky') AS r;
-- each retry follows its retry_delay's backoff (from 100 ms), not the worker's
-- 10-second recheck of an idle queue
SELECT max(gap) < interval '5 seconds' AS retried_after_backoff
  FROM (SELECT a.started_at - lag(a.started_at) OVER (ORDER BY a.attempt) AS gap
          FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
         WHERE d.channel = 'flaky') g;
SELECT herald.drop_rule('flaky');

-- always 500: dead after max_attempts, still queryable
SELECT herald.create_channel('down', 'webhook', test.url('/delivery/down?status=500'),
                             max_attempts => 3, retry_delay => '50 ms');
SELECT herald.on_change('down', 'payments', ARRAY['down'], ARRAY['INSERT']);
INSERT INTO payments VALUES (3, 'cat', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status, last_error, in_flight, next_attempt_at
  FROM herald.deliveries WHERE channel = 'down';
SELECT count(*) AS requests FROM test.received('/delivery/down');
SELECT herald.drop_rule('down');

-- 429 with Retry-After: the next try waits as long as asked, not the backoff
SELECT herald.create_channel('busy', 'webhook',
                             test.url('/delivery/busy?fail_first=1&fail_status=429&retry_after=1'),
                             retry_delay => '50 ms');
SELECT herald.on_change('busy', 'payments', ARRAY['busy'], ARRAY['INSERT']);
INSERT INTO payments VALUES (4, 'dan', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status FROM herald.deliveries WHERE channel = 'busy';
SELECT max(a.started_at) - min(a.started_at) >= interval '1 second' AS waited_retry_after
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE d.channel = 'busy';
SELECT herald.drop_rule('busy');

-- a timeout is retried, then dead
SELECT herald.create_channel('slow', 'webhook', test.url('/delivery/slow?delay_ms=3000'),
                             timeout => '200 ms', max_attempts => 2, retry_delay => '50 ms');
SELECT herald.on_change('slow', 'payments', ARRAY['slow'], ARRAY['INSERT']);
INSERT INTO payments VALUES (5, 'eve', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status, last_error ~ '^Timeout was reached' AS timed_out
  FROM herald.deliveries WHERE channel = 'slow';
SELECT herald.drop_rule('slow');

-- a closed port: the connection error is recorded
SELECT herald.create_channel('closed', 'webhook', 'http://127.0.0.1:9/closed', max_attempts => 1);
SELECT herald.on_change('closed', 'payments', ARRAY['closed'], ARRAY['INSERT']);
INSERT INTO payments VALUES (6, 'fay', 1);
SELECT herald.flush('30 seconds');
-- libcurl 8 says "Could not", 7 "Couldn't"
SELECT status, attempts, last_status, last_error ~ '^Could(n''t| not) connect to server' AS refused
  FROM herald.deliveries WHERE channel = 'closed';
SELECT herald.drop_rule('closed');

-- 3xx is a failure: redirects are not followed
SELECT herald.create_channel('moved', 'webhook',
                             test.url('/delivery/moved?status=301&location=/delivery/elsewhere'),
                             max_attempts => 1);
SELECT herald.on_change('moved', 'payments', ARRAY['moved'], ARRAY['INSERT']);
INSERT INTO payments VALUES (7, 'gil', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status, last_error FROM herald.deliveries WHERE channel = 'moved';
SELECT count(*) AS followed FROM test.received('/delivery/elsewhere');
SELECT herald.drop_rule('moved');

-- 410 Gone: dead at once, and the channel is disabled
SELECT herald.create_channel('gone', 'webhook', test.url('/delivery/gone?status=410'));
SELECT herald.on_change('gone', 'payments', ARRAY['gone'], ARRAY['INSERT']);
INSERT INTO payments VALUES (8, 'hal', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status, last_error FROM herald.deliveries WHERE channel = 'gone';
SELECT enabled, disabled_reason ~ '^endpoint answered HTTP 410 Gone' AS reason
  FROM herald.channels WHERE name = 'gone';
INSERT INTO payments VALUES (9, 'ivy', 1);
SELECT herald.flush('30 seconds');
SELECT attempts, status, last_error FROM herald.deliveries WHERE channel = 'gone' ORDER BY id;
SELECT count(*) AS requests FROM test.received('/delivery/gone');
SELECT herald.redeliver(max(id)) FROM herald.deliveries WHERE channel = 'gone';
SELECT herald.drop_rule('gone');

-- redeliver: a dead delivery goes back to the queue and is delivered
SELECT herald.create_channel('redo', 'webhook', test.url('/delivery/redo?fail_first=2'),
                             max_attempts => 2, retry_delay => '50 ms');
SELECT herald.on_change('redo', 'payments', ARRAY['redo'], ARRAY['INSERT']);
INSERT INTO payments VALUES (10, 'jo', 1);
SELECT herald.flush('30 seconds');
SELECT status, attempts FROM herald.deliveries WHERE channel = 'redo';
SELECT herald.redeliver(id) FROM herald.deliveries WHERE channel = 'redo';
SELECT herald.flush('30 seconds');
SELECT status, attempts, last_status FROM herald.deliveries WHERE channel = 'redo';
SELECT count(*) AS requests, count(DISTINCT r -> 'headers' ->> 'webhook-id') AS webhook_ids
  FROM test.received('/delivery/redo') AS r;
SELECT test.error_of(format('SELECT herald.redeliver(%s)', id))
  FROM herald.deliveries WHERE channel = 'redo';
SELECT herald.redeliver(-1);
SELECT herald.drop_rule('redo');

-- flush: false when the time runs out, refused inside a transaction with work
SELECT herald.create_channel('lazy', 'webhook', test.url('/delivery/lazy?delay_ms=1500'));
SELECT herald.on_change('lazy', 'payments', ARRAY['lazy'], ARRAY['INSERT']);
INSERT INTO payments VALUES (11, 'kim', 1);
SELECT herald.flush('100 ms');
SELECT herald.flush('30 seconds');
BEGIN;
INSERT INTO payments VALUES (12, 'lee', 1);
SELECT herald.flush();
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT herald.flush();
ROLLBACK;
SELECT herald.flush(NULL);
SELECT herald.drop_rule('lazy');

-- every attempt is logged with its latency
SELECT count(*) = sum(d.attempts) AS one_row_per_attempt,
       bool_and(a.latency_ms >= 0) AS latencies
  FROM herald.deliveries d JOIN herald.attempts a ON a.delivery_id = d.id;
DROP TABLE payments;
