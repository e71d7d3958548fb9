-- Decisions: acknowledgements stop reminders, decisions are kept, the
-- timeline tells each event's story in order, the report sums it up.
\set SHOW_CONTEXT never
SELECT herald.create_channel('decisions-hook', 'webhook', test.url('/decisions'));
CREATE TABLE stock (item text PRIMARY KEY, level int NOT NULL);
INSERT INTO stock VALUES ('flour', 50);

SELECT herald.on_threshold('low-flour', $$SELECT level FROM stock WHERE item = 'flour'$$, '<', 10,
                           ARRAY['decisions-hook'], watch => ARRAY['stock'::regclass],
                           pending_for => '1 second', repeat_every => '1 second');
SELECT herald.flush();

-- pending, then firing once the pending period is over, then reminders
UPDATE stock SET level = 5;
SELECT herald.flush();
SELECT test.wait_until($$SELECT count(*) >= 1 FROM herald.events
                          WHERE rule = 'low-flour' AND type = 'rule.reminder'$$);
CREATE TABLE test.fired AS
SELECT id FROM herald.events WHERE rule = 'low-flour' AND type = 'rule.fired';

-- the default message says how to answer
SELECT (r ->> 'body')::jsonb -> 'data' ->> 'message' ~ 'herald.acknowledge\(\d+\);.*herald.decide\(\d+, ' AS says_how
  FROM test.received('/decisions') r
 WHERE (r ->> 'body')::jsonb ->> 'type' = 'rule.fired';

-- acknowledging the episode (here through one of its reminders) stops the reminders
SELECT herald.acknowledge((SELECT max(id) FROM herald.events
                            WHERE rule = 'low-flour' AND type = 'rule.reminder'),
                          'baker called') > 0 AS acknowledged;
SELECT state, acknowledged_at IS NOT NULL AS acknowledged FROM herald.rules WHERE name = 'low-flour';
CREATE TABLE test.reminders AS
SELECT count(*) AS n FROM herald.events WHERE rule = 'low-flour' AND type = 'rule.reminder';
-- nothing to wait for but time: three reminder periods go by
SELECT pg_sleep(3);
UPDATE stock SET level = 4;
SELECT herald.flush();
SELECT count(*) - (SELECT n FROM test.reminders) AS reminders_after_acknowledgement
  FROM herald.events WHERE rule = 'low-flour' AND type = 'rule.reminder';

-- decisions: several per event, each kept
SELECT herald.decide((SELECT id FROM test.fired), 'order 20 kg more', action => 'purchase order 1234') > 0 AS decided;
SELECT herald.decide((SELECT id FROM test.fired), 'switch supplier next month', decided_by => 'the bakery manager') > 0 AS decided;
SELECT event_type, rule, kind, decision, action, note, decided_by
  FROM herald.decisions ORDER BY id;

-- the episode ends; a new one is not acknowledged and reminds again
UPDATE stock SET level = 40;
SELECT herald.flush();
UPDATE stock SET level = 3;
SELECT herald.flush();
SELECT test.wait_until($$SELECT state = 'firing' AND acknowledged_at IS NULL
                          FROM herald.rules WHERE name = 'low-flour'$$);
SELECT test.wait_until($$SELECT count(*) > (SELECT n FROM test.reminders) FROM herald.events
                          WHERE rule = 'low-flour' AND type = 'rule.reminder'$$) AS reminds_again;
SELECT herald.disable_rule('low-flour');

-- the timeline of the first rule.fired event, in order: the evaluations
-- that led to it, the event, its delivery, the acknowledgement (made through a
-- reminder of the same episode), the decisions
SELECT kind, regexp_replace(detail, '\d+', 'N', 'g') AS detail
  FROM herald.timeline WHERE event_id = (SELECT id FROM test.fired)
 ORDER BY at, kind;
-- made through a reminder, the acknowledgement is recorded on the episode's rule.fired event
SELECT kind, detail FROM herald.timeline
 WHERE event_id IN (SELECT event_id FROM herald.decisions WHERE kind = 'acknowledgement')
   AND kind = 'acknowledgement';

-- errors
\set VERBOSITY default
SELECT herald.decide(999999999, 'anything');
SELECT herald.decide((SELECT id FROM test.fired), '  ');
SELECT herald.decide((SELECT id FROM test.fired), NULL);
SELECT herald.acknowledge(999999999);
\set VERBOSITY terse

-- the report on a known history: two episodes of rule a, two of rule b
-- (appended as every event is, then dated)
CREATE TABLE test.history_events AS
SELECT herald._append_event(h.type, NULL, h.rule, '{}', NULL, NULL, NULL, NULL) AS id,
       h.rule, h.created_at::timestamptz AS created_at
  FROM (VALUES ('rule.fired', 'report-a', '2026-01-01 10:00'),
               ('row.inserted', 'report-a', '2026-01-01 11:00'),
               ('rule.escalated', 'report-a', '2026-01-01 12:00'),   -- its rule.fired stands for it
               ('rule.resolved', 'report-a', '2026-01-01 12:30'),     -- calls for no decision
               ('rule.fired', 'report-b', '2026-01-02 09:00'),
               ('rule.reminder', 'report-b', '2026-01-02 10:00'),    -- calls for no decision
               ('rule.fired', 'report-b', '2026-01-03 09:00'),
               ('rule.fired', 'report-b', '2026-02-01 09:00'))       -- outside the window
       AS h(type, rule, created_at);
UPDATE herald.event_log e SET created_at = h.created_at FROM test.history_events h WHERE e.id = h.id;
INSERT INTO herald.decision_log (event_id, kind, decision, decided_by, recorded_by, decided_at)
SELECT h.id, d.kind, d.decision, 'tester', current_user, h.created_at + d.after
  FROM test.history_events h
  JOIN (VALUES ('report-a', '2026-01-01 10:00'::timestamptz, 'acknowledgement', NULL, interval '10 minutes'),
               ('report-a', '2026-01-01 10:00', 'decision', 'restock', interval '1 hour'),
               ('report-a', '2026-01-01 10:00', 'decision', 'restock twice', interval '2 hours'),
               ('report-a', '2026-01-01 11:00', 'acknowledgement', NULL, interval '30 minutes'),
               ('report-a', '2026-01-01 11:00', 'decision', 'ignore', interval '3 hours'),
               ('report-b', '2026-01-02 09:00', 'acknowledgement', NULL, interval '5 minutes'))
       AS d(rule, at, kind, decision, after)
    ON d.rule = h.rule AND d.at = h.created_at;
SELECT * FROM herald.decision_report('2026-01-01', '2026-01-31') WHERE rule LIKE 'report-%';

-- by key, for a grouped threshold rule: paris fires at warning level, then
-- escalates (one episode, not two), lyon fires at critical level; the
-- decision made on paris's escalation counts for paris's episode
CREATE TABLE basket_abandons (shop text PRIMARY KEY, n int NOT NULL);
INSERT INTO basket_abandons VALUES ('paris', 0), ('lyon', 0);
SELECT herald.on_threshold('report-keys', 'SELECT shop, n FROM basket_abandons', '>', 50,
                           ARRAY['decisions-hook'], warning_threshold => 30,
                           watch => ARRAY['basket_abandons'::regclass]);
SELECT herald.flush();
UPDATE basket_abandons SET n = 40 WHERE shop = 'paris';
SELECT herald.flush();
UPDATE basket_abandons SET n = 60 WHERE shop = 'paris';
SELECT herald.flush();
UPDATE basket_abandons SET n = 70 WHERE shop = 'lyon';
SELECT herald.flush();
SELECT type, payload ->> 'key' AS key, payload ->> 'level' AS level
  FROM herald.events WHERE rule = 'report-keys' ORDER BY id;
SELECT herald.decide((SELECT id FROM herald.events WHERE rule = 'report-keys'
                       AND type = 'rule.escalated'), 'paris: a second cashier') > 0 AS decided;
SELECT rule, events, decided, by_choice, by_key
  FROM herald.decision_report() WHERE rule = 'report-keys';
-- a rule without keys has none
SELECT rule, by_key FROM herald.decision_report() WHERE rule = 'low-flour';
SELECT herald.drop_rule('report-keys');
DROP TABLE basket_abandons;

-- follow-ups: once after the delay when nothing is decided, never when a
-- decision came first, again and again with followup_every
ALTER SYSTEM SET herald.decision_url = 'https://intranet.example/decide?event={{event_id}}';
SELECT pg_reload_conf();
CREATE TABLE complaints (id int PRIMARY KEY, customer text);
SELECT herald.on_change('complaint', 'complaints', ARRAY['decisions-hook'], ARRAY['INSERT'],
                        followup_after => '1 second');
SELECT herald.on_change('complaint-nagging', 'complaints', ARRAY['decisions-hook'], ARRAY['INSERT'],
                        followup_after => '1 second', followup_every => '1 second');
INSERT INTO complaints VALUES (1, 'undecided'), (2, 'decided at once');
SELECT herald.decide(e.id, 'refund', decided_by => 'support') > 0 AS decided
  FROM herald.events e WHERE e.rule LIKE 'complaint%' AND e.payload -> 'new' ->> 'id' = '2';
SELECT test.wait_until($$SELECT count(*) >= 2 FROM herald.events
                          WHERE rule = 'complaint-nagging' AND type = 'decision.followup'$$) AS nagged_twice;
SELECT herald.flush();
SELECT about.rule, about.payload -> 'new' ->> 'customer' AS customer,
       CASE WHEN about.rule = 'complaint' THEN count(f.id)::text
            ELSE CASE WHEN count(f.id) >= 2 THEN 'at least 2' ELSE count(f.id)::text END
       END AS followups
  FROM herald.events about
  LEFT JOIN herald.events f ON f.type = 'decision.followup'
                           AND (f.payload ->> 'about_event_id')::bigint = about.id
 WHERE about.rule LIKE 'complaint%' AND about.type = 'row.inserted'
 GROUP BY about.id, about.rule, about.payload ORDER BY about.rule, customer;
-- what the question says, and where it went
SELECT regexp_replace(e.payload ->> 'sql', '\d+', 'N') AS sql,
       regexp_replace(e.payload ->> 'link', '\d+$', 'N') AS link,
       e.payload ->> 'about_type' AS about_type
  FROM herald.events e WHERE e.rule = 'complaint' AND e.type = 'decision.followup';
SELECT regexp_replace((r ->> 'body')::jsonb -> 'data' ->> 'message', '\d+', 'N', 'g') AS message
  FROM test.received('/decisions') r
 WHERE (r ->> 'body')::jsonb ->> 'type' = 'decision.followup'
   AND (r ->> 'body')::jsonb -> 'data' ->> 'rule' = 'complaint';
-- the follow-up is on the timeline of the event it asks about (in the
-- order of kinds: on a busy machine the delivery may come after it)
SELECT kind FROM herald.timeline
 WHERE event_id = (SELECT id FROM herald.events WHERE rule = 'complaint'
                     AND type = 'row.inserted' AND payload -> 'new' ->> 'id' = '1')
 ORDER BY kind;
-- a decision stops the questions
SELECT herald.decide(e.id, 'apology sent') > 0 AS decided
  FROM herald.events e WHERE e.rule = 'complaint-nagging' AND e.type = 'row.inserted'
   AND e.payload -> 'new' ->> 'id' = '1';
CREATE TABLE test.nags AS
SELECT count(*) AS n FROM herald.events WHERE rule = 'complaint-nagging' AND type = 'decision.followup';
-- nothing to wait for but time: two follow-up periods go by
SELECT pg_sleep(2.5);
SELECT count(*) - (SELECT n FROM test.nags) AS followups_after_decision
  FROM herald.events WHERE rule = 'complaint-nagging' AND type = 'decision.followup';
SELECT rule, events, decided, followups > 0 AS followed_up
  FROM herald.decision_report(now() - interval '1 hour', now() + interval '1 hour')
 WHERE rule LIKE 'complaint%';
\set VERBOSITY default
SELECT herald.on_change('bad-followup', 'complaints', ARRAY['decisions-hook'], followup_every => '1 minute');
SELECT herald.on_change('bad-followup', 'complaints', ARRAY['decisions-hook'], followup_after => '10 milliseconds');
\set VERBOSITY terse
ALTER SYSTEM RESET herald.decision_url;
SELECT pg_reload_conf();
SELECT herald.drop_rule('complaint');
SELECT herald.drop_rule('complaint-nagging');

-- meetings: a threshold that turns critical invites the email channel's
-- recipients to a decision meeting, at the next full hour
SELECT herald.create_channel('decisions-mail', 'email', (SELECT smtp_url FROM test.config),
                             recipients => ARRAY['ops@example.com', 'cfo@example.com'],
                             sender => 'herald@example.com');
CREATE TABLE returns_rate (v numeric);
INSERT INTO returns_rate VALUES (1);
SELECT herald.on_threshold('returns-spike', 'SELECT v FROM returns_rate', '>', 10,
                           ARRAY['decisions-mail'], watch => ARRAY['returns_rate'::regclass],
                           warning_threshold => 5, meeting => '30 minutes');
SELECT herald.flush();
UPDATE returns_rate SET v = 7;     -- warning: no meeting yet
SELECT herald.flush();
UPDATE returns_rate SET v = 20;    -- critical: the meeting
SELECT herald.flush();
CREATE TABLE test.invitations AS
SELECT m ->> 'data' LIKE '%X-Herald-Type: rule.escalated%' AS escalated,
       replace(replace(replace(split_part(m ->> 'data', 'Content-Type: text/calendar', 2),
                               E'=\r\n', ''), '=3D', '='), E'\r\n ', '') AS ics
  FROM test.mails() m WHERE m ->> 'data' LIKE '%returns-spike%';
SELECT escalated, ics <> '' AS has_invitation FROM test.invitations ORDER BY escalated;
SELECT (regexp_match(ics, E'\r\n(BEGIN:VCALENDAR)\r\n'))[1] AS calendar,
       (regexp_match(ics, E'\r\n(METHOD:REQUEST)\r\n'))[1] AS method,
       (regexp_match(ics, E'\r\n(VERSION:2.0)\r\n'))[1] AS version,
       (SELECT array_agg(a[1] ORDER BY a[1]) FROM regexp_matches(ics, E'\nATTENDEE;[^\r]*:mailto:([^\r]+)\r', 'g') AS a) AS attendees,
       (regexp_match(ics, E'\r\nORGANIZER:mailto:([^\r]+)\r\n'))[1] AS organizer,
       to_timestamp((regexp_match(ics, E'DTEND:(\\d{8}T\\d{6})Z'))[1], 'YYYYMMDD"T"HH24MISS')
         - to_timestamp((regexp_match(ics, E'DTSTART:(\\d{8}T\\d{6})Z'))[1], 'YYYYMMDD"T"HH24MISS') AS length,
       (regexp_match(ics, E'DTSTART:\\d{8}T\\d\\d(\\d{4})Z'))[1] AS minutes_seconds,
       ics ~ E'\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n' AS ends_well
  FROM test.invitations WHERE escalated;
\set VERBOSITY default
SELECT herald.on_threshold('no-mail-meeting', 'SELECT 1', '>', 0, ARRAY['decisions-hook'],
                           every => '1 hour', meeting => '30 minutes');
\set VERBOSITY terse
SELECT herald.drop_rule('returns-spike');
SELECT herald.drop_channel('decisions-mail');

-- clean up for the tests that follow
DELETE FROM herald.decision_log WHERE event_id IN (SELECT id FROM test.history_events);
DELETE FROM herald.event_log WHERE id IN (SELECT id FROM test.history_events);
SELECT herald.drop_rule('low-flour');
