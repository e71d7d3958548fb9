-- Delivery limits: what the worker does whatever a channel holds, how
-- channel_health counts failed attempts, and how hostile responses are
-- recorded.
\set SHOW_CONTEXT never

-------------------------------------------------------------------------------
-- channel_health counts every attempt: refused connections and timeouts too.
-------------------------------------------------------------------------------
SELECT herald.create_channel('lim-refused', 'webhook', 'http://127.0.0.1:9/refused', max_attempts => 1);
SELECT herald.test_channel('lim-refused') > 0 AS queued FROM generate_series(1, 4);
SELECT herald.flush('30 seconds');
SELECT channel, dead, attempts_1h, success_rate_1h
  FROM herald.channel_health WHERE channel = 'lim-refused';
-- four refused, then one delivered: a rate of one in five
SELECT herald.alter_channel('lim-refused', target => test.url('/delivery-limits/ok'));
SELECT herald.test_channel('lim-refused') > 0 AS queued;
SELECT herald.flush('30 seconds');
SELECT channel, delivered, dead, attempts_1h, success_rate_1h
  FROM herald.channel_health WHERE channel = 'lim-refused';
-- a timeout counts as a failure
SELECT herald.create_channel('lim-slow', 'webhook', test.url('/delivery-limits/slow?delay_ms=3000'),
                             timeout => '200 ms', max_attempts => 1);
SELECT herald.test_channel('lim-slow') > 0 AS queued;
SELECT herald.flush('30 seconds');
SELECT channel, dead, attempts_1h, success_rate_1h
  FROM herald.channel_health WHERE channel = 'lim-slow';

-------------------------------------------------------------------------------
-- Hostile responses: huge headers fail clearly, binary bodies are noted,
-- text bodies are kept truncated.
-------------------------------------------------------------------------------
-- one 2 MB header line (libcurl refuses lines over 100 kB), then 70 kB
-- (over the 64 kB pg_herald reads)
SELECT herald.create_channel('lim-header', 'webhook', test.url('/delivery-limits/header?header_bytes=2000000'),
                             max_attempts => 1);
SELECT herald.create_channel('lim-headers', 'webhook', test.url('/delivery-limits/headers?header_bytes=70000'),
                             max_attempts => 1);
SELECT herald.create_channel('lim-binary', 'webhook', test.url('/delivery-limits/binary?binary=5000'));
SELECT herald.create_channel('lim-text', 'webhook',
                             test.url('/delivery-limits/text?body=' || repeat('%C3%A9', 600)));
SELECT herald.test_channel(c) > 0 AS queued
  FROM unnest(ARRAY['lim-header', 'lim-headers', 'lim-binary', 'lim-text']) AS c;
SELECT herald.flush('30 seconds');
SELECT d.channel, d.status, d.last_status, d.last_error
  FROM herald.deliveries d WHERE d.channel IN ('lim-header', 'lim-headers')
 ORDER BY d.channel;
SELECT d.channel, d.status, a.http_status,
       CASE WHEN d.channel = 'lim-binary' THEN a.response END AS response,
       length(a.response) AS chars, a.response = repeat('é', 512) AS text_cut_at_a_character
  FROM herald.deliveries d JOIN herald.attempts a ON a.delivery_id = d.id
 WHERE d.channel IN ('lim-binary', 'lim-text')
 ORDER BY d.channel;

-------------------------------------------------------------------------------
-- Parameters the declaration and the table's checks refuse, stored by a
-- superuser who dropped the checks: a timeout under a millisecond still
-- times out; a timeout and a retry delay of 300,000 years, or of a negative
-- number of seconds, neither break the claim for every channel nor the
-- recording of outcomes.  The checks come back afterwards.
-------------------------------------------------------------------------------
SELECT test.drop_checks('herald.channel_defs', 'channel_defs_max_attempts_check',
                        'channel_defs_retry_delay_check', 'channel_defs_timeout_check') AS dropped;
INSERT INTO herald.channel_defs (name, kind, target, secret, max_attempts, retry_delay, timeout, created_by)
VALUES ('lim-tiny', 'webhook', test.url('/delivery-limits/tiny?delay_ms=3000'), herald.generate_secret(),
        1, '1 second', '0.4 ms', current_user),
       ('lim-huge', 'webhook', test.url('/delivery-limits/huge?status=500'), herald.generate_secret(),
        2, '300000 years', '300000 years', current_user),
       ('lim-odd', 'webhook', test.url('/delivery-limits/odd?delay_ms=3000'), herald.generate_secret(),
        2, '-1 year 362 days', '-1 year 362 days', current_user),
       ('lim-ok', 'webhook', test.url('/delivery-limits/ok'), herald.generate_secret(),
        3, '1 second', '5 seconds', current_user);
SELECT herald.test_channel(c) > 0 AS queued
  FROM unnest(ARRAY['lim-tiny', 'lim-huge', 'lim-odd', 'lim-ok']) AS c;
-- lim-huge stays pending (its retry waits a day at most, less up to 20%
-- of jitter): wait for the others
-- and its first attempt, at most 30 seconds
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM herald.deliveries
                               WHERE channel IN ('lim-tiny', 'lim-odd', 'lim-ok') AND status = 'pending')
              AND EXISTS (SELECT 1 FROM herald.deliveries WHERE channel = 'lim-huge' AND attempts = 1);
        PERFORM pg_sleep(0.1);
    END LOOP;
END;
$$;
SELECT channel, status, attempts, last_status, last_error ~ '^Timeout was reached' AS timed_out,
       CASE WHEN status = 'pending'
            THEN next_attempt_at BETWEEN now() + interval '19 hours' AND now() + interval '1 day 1 minute'
       END AS retry_within_a_day
  FROM herald.deliveries WHERE channel LIKE 'lim-%' AND channel NOT IN
       ('lim-refused', 'lim-slow', 'lim-header', 'lim-headers', 'lim-binary', 'lim-text')
 ORDER BY channel;
-- flush() returns, false: lim-huge is still pending
SELECT herald.flush('500 ms');
-- the extreme channels do not stop the others
SELECT herald.test_channel('lim-ok') > 0 AS queued;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM herald.deliveries WHERE channel = 'lim-ok' AND status = 'pending');
        PERFORM pg_sleep(0.1);
    END LOOP;
END;
$$;
SELECT status, count(*) FROM herald.deliveries WHERE channel = 'lim-ok' GROUP BY 1;

SELECT herald.drop_channel(c)
  FROM unnest(ARRAY['lim-refused', 'lim-slow', 'lim-header', 'lim-headers', 'lim-binary',
                    'lim-text', 'lim-tiny', 'lim-huge', 'lim-odd', 'lim-ok']) AS c;
SELECT test.restore_checks() AS restored;
SELECT herald.flush();
