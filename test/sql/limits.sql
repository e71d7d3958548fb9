-- Parameter ranges: every interval and number of the API is refused outside
-- its documented range (just inside is accepted, just outside refused, NaN
-- and the infinities too), names and header values are bounded, an empty
-- condition is a clear error, URLs are masked; and a channel and rules at
-- the extreme allowed values do not stop anyone else's deliveries.
\set SHOW_CONTEXT never

-- What a statement does, undone: 'accepted', or its SQLSTATE and message.
CREATE FUNCTION test.try(statement text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE statement;
        RAISE EXCEPTION USING ERRCODE = 'P0099';
    EXCEPTION WHEN SQLSTATE 'P0099' THEN
        RETURN 'accepted';
    END;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END;
$$;

CREATE TABLE limits_t (id int PRIMARY KEY, note text);
SELECT herald.create_channel('limits-near', 'webhook', test.url('/limits/near'));

-- create_channel: each bound, just inside and just outside
SELECT p AS parameter, v AS value,
       test.try(format('SELECT herald.create_channel(%L, %L, %L, %s => %L)',
                       'limits-x', 'webhook', 'https://hooks.example.com/', p, v)) AS result
  FROM (VALUES ('timeout', '100 milliseconds'), ('timeout', '99.999 milliseconds'),
               ('timeout', '10 minutes'), ('timeout', '10 minutes 0.000001 seconds'),
               ('timeout', '0'), ('timeout', '-1 second'), ('timeout', '0.4 milliseconds'),
               ('timeout', '300000 years'), ('timeout', NULL),
               ('timeout', '1 month -30 days 5 minutes'), ('timeout', '1 minute -59 seconds'),
               ('retry_delay', '10 milliseconds'), ('retry_delay', '9.999 milliseconds'),
               ('retry_delay', '1 day'), ('retry_delay', '1 day 0.000001 seconds'),
               ('retry_delay', '0'), ('retry_delay', '300000 years'),
               ('max_attempts', '1'), ('max_attempts', '0'), ('max_attempts', '100'),
               ('max_attempts', '101'), ('max_attempts', '-1'), ('max_attempts', NULL),
               ('max_concurrency', '1'), ('max_concurrency', '0'), ('max_concurrency', '1000'),
               ('max_concurrency', '1001'),
               ('rate_limit', '0.001'), ('rate_limit', '0.000999'), ('rate_limit', '1000000'),
               ('rate_limit', '1000000.000001'), ('rate_limit', '0'), ('rate_limit', '-1'),
               ('rate_limit', 'NaN'), ('rate_limit', 'Infinity'), ('rate_limit', '-Infinity'))
       AS t(p, v);

-- an interval whose parts have opposite signs lasts differently from one
-- date to another: refused whatever it compares to
SELECT herald.create_channel('limits-x', 'webhook', 'https://hooks.example.com/',
                             timeout => '1 month -30 days 5 minutes');

-- alter_channel checks the same ranges, and rotation's
SELECT p AS parameter, v AS value,
       test.try(format('SELECT herald.alter_channel(%L, %s => %L)', 'limits-near', p, v)) AS result
  FROM (VALUES ('timeout', '10 minutes'), ('timeout', '10 minutes 0.000001 seconds'),
               ('retry_delay', '1 day 0.000001 seconds'), ('max_attempts', '101'),
               ('max_concurrency', '1001'), ('rate_limit', 'NaN'),
               ('rotation', '0'), ('rotation', '-0.000001 seconds'), ('rotation', '30 days'),
               ('rotation', '30 days 0.000001 seconds'), ('rotation', '300000 years'),
               ('rotation', NULL))
       AS t(p, v);
SELECT test.try($$SELECT herald.alter_channel('limits-near', secret => herald.generate_secret(),
                                              rotation => '30 days')$$) AS rotation_30_days;

-- on_threshold: each bound, just inside and just outside
SELECT p AS parameter, v AS value,
       test.try(format('SELECT herald.on_threshold(%L, %L, %L, 1, ARRAY[%L], %s)',
                       'limits-x', 'SELECT 1', '>', 'limits-near',
                       CASE WHEN p = 'every' THEN format('every => %L', v)
                            ELSE format('every => %L, %s => %L', '1 hour', p, v) END)) AS result
  FROM (VALUES ('every', '1 second'), ('every', '0.999999 seconds'), ('every', '366 days'),
               ('every', '366 days 0.000001 seconds'), ('every', '300000 years'),
               ('every', '-1 day'),
               ('pending_for', '0'), ('pending_for', '-0.000001 seconds'),
               ('pending_for', '30 days'), ('pending_for', '30 days 0.000001 seconds'),
               ('pending_for', '1 month -30 days'),
               ('repeat_every', '1 second'), ('repeat_every', '0.999999 seconds'),
               ('repeat_every', '30 days'), ('repeat_every', '30 days 0.000001 seconds'),
               ('min_interval', '0'), ('min_interval', '-0.000001 seconds'),
               ('min_interval', '1 day'), ('min_interval', '1 day 0.000001 seconds'),
               ('min_interval', NULL),
               ('query_timeout', '10 milliseconds'), ('query_timeout', '9.999 milliseconds'),
               ('query_timeout', '1 hour'), ('query_timeout', '1 hour 0.000001 seconds'),
               ('query_timeout', '0'), ('query_timeout', NULL),
               ('followup_after', '1 second'), ('followup_after', '0.999999 seconds'),
               ('followup_after', '30 days'), ('followup_after', '30 days 0.000001 seconds'),
               ('followup_after', '1000000 years'))
       AS t(p, v);
-- followup_every needs followup_after
SELECT v AS followup_every,
       test.try(format('SELECT herald.on_threshold(%L, %L, %L, 1, ARRAY[%L], every => %L,'
                       ' followup_after => %L, followup_every => %L)',
                       'limits-x', 'SELECT 1', '>', 'limits-near', '1 hour', '1 hour', v)) AS result
  FROM unnest(ARRAY['1 second', '0.999999 seconds', '30 days', '30 days 0.000001 seconds']) AS v;

-- a meeting needs an email channel, which is checked after its length
SELECT herald.create_channel('limits-mail', 'email', 'smtp://127.0.0.1:25',
                             recipients => ARRAY['ops@example.com'], sender => 'herald@example.com');
SELECT v AS meeting,
       test.try(format('SELECT herald.on_threshold(%L, %L, %L, 1, ARRAY[%L], every => %L, meeting => %L)',
                       'limits-x', 'SELECT 1', '>', 'limits-mail', '1 hour', v)) AS result
  FROM unnest(ARRAY['5 minutes', '4 minutes 59.999999 seconds', '8 hours',
                    '8 hours 0.000001 seconds']) AS v;
SELECT herald.drop_channel('limits-mail');

-- thresholds are finite numbers
SELECT p AS parameter, v AS value,
       test.try(format('SELECT herald.on_threshold(%L, %L, %L, %s, ARRAY[%L], every => %L%s)',
                       'limits-x', 'SELECT 1', '>', CASE WHEN p = 'threshold' THEN quote_literal(v) ELSE '100' END,
                       'limits-near', '1 hour',
                       CASE WHEN p = 'threshold' THEN '' ELSE format(', %s => %L', p, v) END)) AS result
  FROM (VALUES ('threshold', 'NaN'), ('threshold', 'Infinity'), ('threshold', '-Infinity'),
               ('threshold', '1e300'),
               ('warning_threshold', 'NaN'), ('warning_threshold', '-Infinity'),
               ('warning_threshold', '50'),
               ('recover_threshold', 'NaN'), ('recover_threshold', '-Infinity'),
               ('recover_threshold', '10'))
       AS t(p, v);

-- on_change's follow-ups
SELECT p AS parameter, v AS value,
       test.try(format('SELECT herald.on_change(%L, %L, ARRAY[%L], followup_after => %L%s)',
                       'limits-x', 'limits_t', 'limits-near',
                       CASE WHEN p = 'followup_after' THEN v ELSE '1 hour' END,
                       CASE WHEN p = 'followup_every' THEN format(', followup_every => %L', v) ELSE '' END)) AS result
  FROM (VALUES ('followup_after', '1 second'), ('followup_after', '0.999999 seconds'),
               ('followup_after', '30 days'), ('followup_after', '30 days 0.000001 seconds'),
               ('followup_every', '1 second'), ('followup_every', '0'),
               ('followup_every', '30 days'), ('followup_every', '30 days 0.000001 seconds'))
       AS t(p, v);

-- silence: until lies 1 second to 366 days ahead
SELECT herald.on_change('limits-row', 'limits_t', ARRAY['limits-near'], ARRAY['INSERT']);
SELECT label, test.try(format('SELECT herald.silence(%L, %s, %L)', 'limits-row', until, 'maintenance')) AS result
  FROM (VALUES ('366 days ahead', $$now() + interval '366 days'$$),
               ('366 days and 1 second ahead', $$now() + interval '366 days 1 second'$$),
               ('2 seconds ahead', $$now() + interval '2 seconds'$$),
               ('half a second ahead', $$now() + interval '0.5 seconds'$$),
               ('now', 'now()'),
               ('a day ago', $$now() - interval '1 day'$$),
               ('infinity', $$'infinity'$$),
               ('-infinity', $$'-infinity'$$),
               ('year 294276', $$'294276-12-31 00:00:00+00'$$),
               ('null', 'NULL'))
       AS t(label, until);

-- flush: 0 to 1 hour
SELECT v AS timeout, test.try(format('SELECT herald.flush(%L)', v)) AS result
  FROM unnest(ARRAY['-0.000001 seconds', '1 hour 0.000001 seconds', '300000 years']) AS v;

-- names: 1 to 200 characters, no control character
SELECT label,
       test.try(format('SELECT herald.create_channel(%L, %L, %L)', n, 'webhook', 'https://hooks.example.com/')) AS channel,
       test.try(format('SELECT herald.on_change(%L, %L, ARRAY[%L])', n, 'limits_t', 'limits-near')) AS rule
  FROM (VALUES ('200 characters', repeat('n', 200)),
               ('200 characters, multibyte', repeat('é', 200)),
               ('201 characters', repeat('n', 201)),
               ('1 MB', repeat('n', 1000000)),
               ('empty', ''),
               ('newline', E'ops\nalerts'),
               ('carriage return', E'ops\ralerts'),
               ('tab', E'ops\talerts'),
               ('\x01', E'ops\x01'),
               ('\x7f', E'ops\x7f'),
               ('spaces and punctuation', 'ops: alerts (EU) #1'))
       AS t(label, n);

-- header names and values: no control character
SELECT label,
       test.try(format('SELECT herald.create_channel(%L, %L, %L, headers => %L)',
                       'limits-x', 'webhook', 'https://hooks.example.com/', h)) AS result
  FROM (VALUES ('plain', jsonb_build_object('X-Team', 'ops eu-1')),
               ('\x01 in a value', jsonb_build_object('X-Team', E'ops\x01')),
               ('\x1f in a value', jsonb_build_object('X-Team', E'ops\x1f')),
               ('\x7f in a value', jsonb_build_object('X-Team', E'ops\x7f')),
               ('tab in a value', jsonb_build_object('X-Team', E'ops\teu')),
               ('newline in a value', jsonb_build_object('X-Team', E'ops\nX-Evil: 1')),
               ('\x01 in a name', jsonb_build_object(E'X-Te\x01am', 'ops')),
               ('\x7f in a name', jsonb_build_object(E'X-Team\x7f', 'ops')))
       AS t(label, h);

-- an empty condition is refused, not a syntax error at ")"
SELECT quote_literal(c) AS condition,
       test.try(format('SELECT herald.on_change(%L, %L, ARRAY[%L], condition => %L)',
                       'limits-x', 'limits_t', 'limits-near', c)) AS result
  FROM unnest(ARRAY['', '   ', E'\n\t ', '/* nothing */', '-- nothing', '/* unterminated',
                    'NEW.id > 0']) AS c;

-- URLs as authors see them: no user information, path or query
SELECT herald.create_channel('limits-key-user', 'webhook', 'https://sk_live_x@hooks.example.com/in/T0');
SELECT herald.create_channel('limits-key-both', 'webhook', 'https://sk_live_x:pw@hooks.example.com/');
SELECT herald.create_channel('limits-key-mail', 'email', 'smtps://apikey@mail.example.com',
                             secret => 'pw', recipients => ARRAY['ops@example.com'],
                             sender => 'herald@example.com');
SELECT name, target FROM herald.channels WHERE name LIKE 'limits-key-%' ORDER BY name;
SELECT u AS url, herald._mask_url(u) AS masked
  FROM unnest(ARRAY['https://a:b@c@hooks.example.com/x', 'https://hooks.example.com/p@q',
                    'https://@hooks.example.com', 'https://hooks.example.com?token=x',
                    'not a url']) AS u;
SELECT herald.drop_channel('limits-key-user');
SELECT herald.drop_channel('limits-key-both');
SELECT herald.drop_channel('limits-key-mail');

-- A channel at every extreme (longest timeout and retry delay, most
-- attempts, highest rate and concurrency), one at the lowest rate, and
-- rules at the longest periods: the others' deliveries go on, the failed
-- delivery waits its retry delay (a day), and a redeliver gets it through.
SELECT herald.create_channel('limits-far', 'webhook', test.url('/limits/far?fail_first=1'),
                             timeout => '10 minutes', retry_delay => '1 day', max_attempts => 100,
                             max_concurrency => 1000, rate_limit => 1000000);
SELECT herald.create_channel('limits-slowest', 'webhook', test.url('/limits/slowest'),
                             timeout => '100 milliseconds', retry_delay => '10 milliseconds',
                             max_attempts => 1, max_concurrency => 1, rate_limit => 0.001);
SELECT herald.drop_rule('limits-row');
SELECT herald.on_change('limits-row', 'limits_t', ARRAY['limits-far', 'limits-slowest', 'limits-near'],
                        ARRAY['INSERT'], followup_after => '30 days', followup_every => '30 days');
-- (a rule held back by min_interval counts as pending work for flush():
-- this one watches a table nobody writes to, and is evaluated once, when
-- declared)
CREATE TABLE limits_w (id int);
SELECT herald.on_threshold('limits-far-rule', 'SELECT 1', '>', 0,
                           ARRAY['limits-far'], watch => ARRAY['limits_w'::regclass],
                           every => '366 days', pending_for => '30 days', repeat_every => '30 days',
                           min_interval => '1 day', query_timeout => '1 hour',
                           followup_after => '30 days', followup_every => '30 days');
SELECT herald.on_threshold('limits-near-rule', 'SELECT count(*) FROM limits_t', '>', 0,
                           ARRAY['limits-near'], watch => ARRAY['limits_t'::regclass]);
SELECT herald.silence('limits-far-rule', now() + interval '366 days', 'longest silence') > 0 AS silenced;
INSERT INTO limits_t VALUES (1, 'first');
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN (SELECT count(*) FROM herald.deliveries d
                    WHERE d.channel LIKE 'limits-%'
                      AND (d.status <> 'pending' OR d.attempts > 0)) = 4
              AND EXISTS (SELECT 1 FROM herald.rule_instances i
                            JOIN herald.rule_defs r ON r.id = i.rule_id
                           WHERE r.name = 'limits-far-rule' AND i.state = 'pending');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT d.channel, e.type, d.status, d.attempts, d.last_status,
       d.next_attempt_at BETWEEN now() + interval '0.8 days' - interval '1 minute'
                             AND now() + interval '1.2 days' AS retry_in_a_day
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE d.channel LIKE 'limits-%' ORDER BY d.channel, e.type;
SELECT r.name, i.state, i.next_check_at - i.pending_since AS pending_for,
       (herald._active_silence(r.id)).id IS NOT NULL AS silenced
  FROM herald.rule_defs r JOIN herald.rule_instances i ON i.rule_id = r.id
 WHERE r.name LIKE 'limits-%-rule' ORDER BY r.name;
SELECT herald.redeliver(id) FROM herald.deliveries WHERE channel = 'limits-far';
SELECT herald.flush();
SELECT channel, status, attempts, last_status FROM herald.deliveries
 WHERE channel LIKE 'limits-%' ORDER BY channel, id;

-- later events go out the same way
INSERT INTO limits_t VALUES (2, 'second');
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN (SELECT count(*) FROM herald.deliveries d
                    WHERE (d.channel = 'limits-near' AND d.status = 'delivered')
                       OR (d.channel = 'limits-far' AND d.attempts > 0)) = 5;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT channel, status, attempts, last_status FROM herald.deliveries
 WHERE channel IN ('limits-far', 'limits-near') ORDER BY channel, id;
SELECT herald.unsilence('limits-far-rule');
SELECT herald.drop_rule('limits-row');
SELECT herald.drop_rule('limits-far-rule');
SELECT herald.drop_rule('limits-near-rule');
-- the second delivery to the slowest channel waits for a token: dropped with it
SET client_min_messages = warning;
SELECT herald.drop_channel('limits-slowest');
RESET client_min_messages;
SELECT herald.redeliver(id) FROM herald.deliveries WHERE channel = 'limits-far' AND status = 'pending';
SELECT herald.flush(), herald.flush('0'), herald.flush('1 hour');
SELECT r ->> 'path' AS path, count(*) AS requests
  FROM test.received('/limits/') AS r WHERE r ->> 'path' <> '/limits/slowest' GROUP BY 1 ORDER BY 1;
SELECT count(*) >= 1 AS slowest_received FROM test.received('/limits/slowest');
SELECT herald.drop_channel('limits-far');
SELECT herald.drop_channel('limits-near');
DROP TABLE limits_t, limits_w;
DROP FUNCTION test.try(text);
