-- Golden messages: for each kind (slack, teams, google_chat, email,
-- webhook, notify), the body delivered for every event type it carries,
-- masked of times, ids and tokens, one headed section per kind and type
-- ("==== kind: type ====").
--
-- The events come from real rules, one step at a time: each step makes one
-- event (flush in between), and what every channel received during the step
-- is that event's message.  To regenerate test/expected/goldens.out after a
-- change of a format, a fact or a default message:
--
--   HERALD_ONLY=regress HERALD_KEEP_TMP=1 bash test/run
--
-- then read the diff printed at the end and copy results/goldens.out from
-- the temporary directory it names over test/expected/goldens.out.
\set SHOW_CONTEXT never
\getenv receiver_log HERALD_RECEIVER_LOG
-- notify: psql writes the notifications it receives where query output goes
\set notify_log :receiver_log '.goldens-notify'

-- Messages carry actions only with a public URL (test.await_actions:
-- until the delivery workers took it).
ALTER SYSTEM SET herald.public_url = 'https://decide.example';
SELECT pg_reload_conf();
CREATE TABLE g_probe (id serial PRIMARY KEY);
SELECT herald.create_channel('g-probe', 'webhook', test.url('/goldens-probe'));
SELECT herald.on_change('g-probe', 'g_probe', ARRAY['g-probe'], ARRAY['INSERT'], choices => ARRAY['Seen']);
CALL test.await_actions('g_probe', '/goldens-probe', true);
SELECT herald.drop_rule('g-probe');
SELECT herald.drop_channel('g-probe');

-- One channel per kind.
SELECT herald.create_channel('g-slack', 'slack', test.url('/goldens/slack'), rate_limit => 1000);
SELECT herald.create_channel('g-teams', 'teams', test.url('/goldens/teams'));
SELECT herald.create_channel('g-chat', 'google_chat', test.url('/goldens/google_chat'),
                             rate_limit => 1000);
SELECT herald.create_channel('g-mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['sales@example.com'], sender => 'herald@example.com');
SELECT herald.create_channel('g-hook', 'webhook', test.url('/goldens/webhook'));
SELECT herald.create_channel('g-notify', 'notify', 'herald_goldens');
CREATE TABLE test.g_channels AS
SELECT * FROM (VALUES (1, 'slack', 'g-slack'), (2, 'teams', 'g-teams'), (3, 'google_chat', 'g-chat'),
                      (4, 'email', 'g-mail'), (5, 'webhook', 'g-hook'), (6, 'notify', 'g-notify'))
       AS c(ord, kind, channel);

-- What each step made: its events, and what the channels received meanwhile
-- (the receiver's and the SMTP server's log lines).
CREATE TABLE test.g_steps (ord int, label text, event_ids bigint[]);
CREATE TABLE test.g_bodies (step int, kind text, n int, body text);
CREATE TABLE test.g_seen (last_event bigint, last_mail int, last_request int);
INSERT INTO test.g_seen
SELECT (SELECT coalesce(max(id), 0) FROM herald.event_log),
       (SELECT coalesce(max((m ->> 'n')::int), 0) FROM test.mails() m),
       (SELECT coalesce(max((r ->> 'n')::int), 0) FROM test.received('/') r);
-- Wait for the step's work, then record it under label (NULL: a step whose
-- messages are not goldens).
CREATE PROCEDURE test.g_step(label text)
LANGUAGE plpgsql AS $$
DECLARE
    s test.g_seen;
    v_ord int := (SELECT count(*) + 1 FROM test.g_steps);
BEGIN
    IF NOT herald.flush('30 seconds') THEN
        RAISE EXCEPTION 'step "%": the deliveries did not finish', label;
    END IF;
    SELECT * INTO s FROM test.g_seen;
    IF label IS NOT NULL THEN
        INSERT INTO test.g_steps
        SELECT v_ord, label, array_agg(e.id ORDER BY e.id)
          FROM herald.event_log e WHERE e.id > s.last_event;
        INSERT INTO test.g_bodies
        SELECT v_ord, split_part(r ->> 'path', '/', 3), (r ->> 'n')::int,
               test.act_mask(jsonb_pretty((r ->> 'body')::jsonb))
          FROM test.received('/goldens/') r WHERE (r ->> 'n')::int > s.last_request;
        INSERT INTO test.g_bodies
        SELECT v_ord, 'email', (m ->> 'n')::int,
               -- lines end in CRLF on the wire; here in LF
               replace(test.act_mask(m ->> 'data'), E'\r\n', E'\n')
          FROM test.mails() m WHERE (m ->> 'n')::int > s.last_mail;
    END IF;
    UPDATE test.g_seen
       SET last_event = (SELECT coalesce(max(id), 0) FROM herald.event_log),
           last_mail = (SELECT coalesce(max((m ->> 'n')::int), 0) FROM test.mails() m),
           last_request = (SELECT coalesce(max((r ->> 'n')::int), 0) FROM test.received('/') r);
END
$$;

-- From here on until every notification arrived, query output goes to a
-- file (the notifications, with the process id that sent them, with it).
LISTEN herald_goldens;
\o :notify_log

-- channel.test
SELECT herald.test_channel(channel) FROM test.g_channels ORDER BY ord;
CALL test.g_step('channel.test');

-- Row events, from a rule with choices.
CREATE TABLE g_orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL,
                       note text);
SELECT herald.on_change('big-order', 'g_orders', ARRAY(SELECT channel FROM test.g_channels ORDER BY ord),
                        choices => ARRAY['Call the customer', 'Check for fraud']);
INSERT INTO g_orders VALUES (7001, 'Globex', 18250.00, 'first order');
CALL test.g_step('row.inserted');
UPDATE g_orders SET amount = 19250.00, note = 'with installation' WHERE id = 7001;
CALL test.g_step('row.updated');
DELETE FROM g_orders WHERE id = 7001;
CALL test.g_step('row.deleted');

-- A grouped threshold rule: warning, escalation to critical,
-- acknowledgement, resolution, then an error.
CREATE TABLE g_baskets (shop text PRIMARY KEY, n int NOT NULL);
INSERT INTO g_baskets VALUES ('paris', 0);
SELECT herald.on_threshold('abandoned-baskets',
                           'SELECT shop, CASE WHEN n >= 0 THEN n ELSE n / 0 END FROM g_baskets',
                           '>', 50, ARRAY(SELECT channel FROM test.g_channels ORDER BY ord),
                           warning_threshold => 30, recover_threshold => 20,
                           watch => ARRAY['g_baskets'::regclass],
                           message => '{{value}} baskets abandoned in {{key}}');
CALL test.g_step(NULL);
UPDATE g_baskets SET n = 40;
CALL test.g_step('rule.fired');
UPDATE g_baskets SET n = 60;
CALL test.g_step('rule.escalated');
SELECT herald.acknowledge((SELECT max(id) FROM herald.events
                            WHERE rule = 'abandoned-baskets' AND type = 'rule.escalated'),
                          'looking at the checkout');
CALL test.g_step('decision.recorded (acknowledgement)');
UPDATE g_baskets SET n = 10;
CALL test.g_step('rule.resolved');
UPDATE g_baskets SET n = -1;
CALL test.g_step('rule.error');

-- A reminder, from a rule of its own, dropped once it reminded (so that no
-- reminder comes during another step; of two, the first is kept).  The
-- metric is over its threshold from the start: the first evaluation fires,
-- whenever the scheduler comes to it.
CREATE TABLE g_queue (n int NOT NULL);
INSERT INTO g_queue VALUES (150);
SELECT herald.on_threshold('order-queue', 'SELECT n FROM g_queue', '>', 100,
                           ARRAY(SELECT channel FROM test.g_channels ORDER BY ord),
                           watch => ARRAY['g_queue'::regclass], repeat_every => '1 second',
                           message => '{{value}} orders waiting');
CALL test.g_step(NULL);
SELECT test.wait_until($$SELECT count(*) > 0 FROM herald.events
                          WHERE rule = 'order-queue' AND type = 'rule.reminder'$$);
SELECT herald.drop_rule('order-queue');
CALL test.g_step('rule.reminder');

-- A follow-up, and the decision that answers it.
CREATE TABLE g_complaints (id int PRIMARY KEY, customer text NOT NULL);
SELECT herald.on_change('complaint', 'g_complaints', ARRAY(SELECT channel FROM test.g_channels ORDER BY ord),
                        ARRAY['INSERT'], message => 'Complaint {{new.id}} from {{new.customer}}',
                        followup_after => '1 second');
INSERT INTO g_complaints VALUES (12, 'Initech');
CALL test.g_step(NULL);
SELECT test.wait_until($$SELECT count(*) > 0 FROM herald.events
                          WHERE rule = 'complaint' AND type = 'decision.followup'$$);
CALL test.g_step('decision.followup');
SELECT herald.decide((SELECT id FROM herald.events WHERE rule = 'complaint' AND type = 'row.inserted'),
                     'refund the delivery', action => 'send a voucher', action_owner => 'ann',
                     action_due => '2026-12-24');
CALL test.g_step('decision.recorded');

-- every notification is in
SELECT 1;
\o
UNLISTEN herald_goldens;

-- The notifications, by the event each is about.
INSERT INTO test.g_bodies
SELECT s.ord, 'notify', x.n, test.act_mask(jsonb_pretty(x.payload))
  FROM (SELECT n, (m[1])::jsonb AS payload
          FROM regexp_matches(pg_read_file(:'notify_log'),
                              'Asynchronous notification "herald_goldens" with payload "([^\n]*)" received from server process with PID \d+\.',
                              'g') WITH ORDINALITY AS t(m, n)) x
  JOIN test.g_steps s ON (x.payload ->> 'event_id')::bigint = ANY (s.event_ids);

-- Each step made events of its type only, and every kind received a message in each.
SELECT s.label, array_agg(DISTINCT e.type) AS types
  FROM test.g_steps s JOIN herald.event_log e ON e.id = ANY (s.event_ids)
 GROUP BY s.ord, s.label ORDER BY s.ord;
SELECT c.kind, count(DISTINCT b.step) AS steps_received
  FROM test.g_channels c LEFT JOIN test.g_bodies b ON b.kind = c.kind
 GROUP BY c.kind, c.ord ORDER BY c.ord;

-- The goldens: one section per kind and type (a step's first message).
\pset format unaligned
\pset tuples_only on
SELECT format(E'==== %s: %s ====\n%s\n', c.kind, s.label, coalesce(b.body, '(nothing delivered)'))
  FROM test.g_channels c
 CROSS JOIN test.g_steps s
  LEFT JOIN LATERAL (SELECT x.body FROM test.g_bodies x
                      WHERE x.step = s.ord AND x.kind = c.kind
                      ORDER BY x.n LIMIT 1) b ON true
 ORDER BY c.ord, s.ord;
\pset format aligned
\pset tuples_only off

-- clean up
ALTER SYSTEM RESET herald.public_url;
SELECT pg_reload_conf();
SELECT herald.drop_rule(n) FROM unnest(ARRAY['big-order', 'abandoned-baskets', 'complaint']) n;
SELECT herald.drop_channel(channel) FROM test.g_channels ORDER BY ord;
DROP TABLE g_probe, g_orders, g_baskets, g_queue, g_complaints;
DROP TABLE test.g_channels, test.g_steps, test.g_bodies, test.g_seen;
DROP PROCEDURE test.g_step(text);
