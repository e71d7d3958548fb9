-- One row per event: an event names its channels and the writer writes
-- nothing else; a delivery is (event, channel), its id event id * 1000000 +
-- channel id; delivery_queue holds the exceptions (retries, dead, held
-- back, redelivered).  In a database the workers do not serve, with the
-- rows a delivery worker writes made by hand, so that every state is seen
-- as the views, redeliver and drop_channel read it.
CREATE DATABASE herald_events;
\c herald_events
SET client_min_messages = error;   -- the warnings that nothing is served
CREATE EXTENSION pg_herald;
SELECT herald.create_channel('one', 'webhook', 'http://127.0.0.1:9/one');
SELECT herald.create_channel('two', 'webhook', 'http://127.0.0.1:9/two');
SELECT herald.on_threshold('rule', 'SELECT 1', '>', 0, ARRAY['one', 'two'], every => '1 hour',
                           followup_after => '1 day');
-- the events of a rule (as its transitions emit them), one while it is
-- silenced, a test message, one event for one of the rule's channels
SELECT herald._emit(id, 'rule.fired', '{"n": 1}') FROM herald.rule_defs;
SELECT herald._emit(id, 'rule.resolved', '{"n": 2}') FROM herald.rule_defs;
SELECT herald.silence('rule', now() + interval '1 hour', 'quiet');
SELECT herald._emit(id, 'rule.fired', '{"n": 3}') FROM herald.rule_defs;
SELECT herald.unsilence('rule');
SELECT herald.test_channel('two') AS test_delivery;
SELECT herald._emit(id, 'decision.recorded', '{"n": 5}', channel_ids => ARRAY[2, 3]) FROM herald.rule_defs;
RESET client_min_messages;

-- the events name their channels (a silenced one none, and awaits no
-- decision); no delivery row
SELECT e.id, e.type, e.rule, e.channel_ids, e.silenced_by IS NOT NULL AS silenced, e.awaits_decision
  FROM herald.event_log e ORDER BY e.id;
SELECT count(*) AS queue_rows FROM herald.delivery_queue;
-- every delivery, not yet read by a worker: pending, due since its event
SELECT d.id, d.event_id, d.channel, d.status, d.attempts, d.in_flight,
       d.next_attempt_at = e.created_at AS due_since_event, d.created_at = e.created_at AS created,
       d.finished_at, d.webhook_id = herald.webhook_id(d.id) AS webhook_id
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id ORDER BY d.id;
SELECT channel, pending, in_flight, delivered, dead, oldest_pending_age IS NOT NULL AS oldest
  FROM herald.channel_health ORDER BY channel;

-- a worker reads events 1 and 2: (1, one) is delivered at its first try,
-- (1, two) fails once and waits for its retry, (2, one) is held back by
-- its channel's limits, (2, two) is dead at once (HTTP 410)
INSERT INTO herald.delivery_cursors (slot, workers, position) VALUES (0, 1, 2);
INSERT INTO herald.attempt_log (delivery_id, channel_id, attempt, started_at, latency_ms, http_status, error)
VALUES (1000001, 1, 1, now(), 5, 200, NULL),
       (1000002, 2, 1, now() + interval '1 ms', 7, 500, 'HTTP 500'),
       (2000002, 2, 1, now() + interval '2 ms', 3, 410, 'HTTP 410 Gone');
INSERT INTO herald.delivery_queue (id, event_id, channel_id, status, attempts, next_attempt_at,
                                   last_status, last_error, finished_at)
VALUES (1000002, 1, 2, 'pending', 1, now() + interval '5 seconds', 500, 'HTTP 500', NULL),
       (2000001, 2, 1, 'pending', 0, now(), NULL, NULL, NULL),
       (2000002, 2, 2, 'dead', 1, now(), 410, 'HTTP 410 Gone', now());
SELECT d.id, d.channel, d.status, d.attempts, d.last_status, d.last_error,
       d.next_attempt_at IS NOT NULL AS next_attempt, d.finished_at IS NOT NULL AS finished
  FROM herald.deliveries d ORDER BY d.id;
SELECT delivery_id, attempt, http_status, error FROM herald.attempts ORDER BY delivery_id;
SELECT kind, detail FROM herald.timeline WHERE event_id = 1 ORDER BY at, kind;
SELECT channel, pending, in_flight, delivered, dead FROM herald.channel_health ORDER BY channel;

-- redeliver: a queued one, pending or dead, is due now with a new budget;
-- one not read yet is due already; a delivered one and one that is no
-- delivery are refused, and so is a disabled channel
\set VERBOSITY terse
SELECT herald.redeliver(1000002);
SELECT herald.redeliver(2000002);
SELECT herald.redeliver(4000002);
SELECT id, status, attempts, retry_base, next_attempt_at <= now() AS due, finished_at FROM herald.delivery_queue ORDER BY id;
SELECT herald.redeliver(1000001);
SELECT herald.redeliver(3000001);
SELECT herald.redeliver(1000003);
SELECT herald.redeliver(42);
SELECT herald.alter_channel('one', enabled => false);
SELECT herald.redeliver(2000001);
SELECT herald.alter_channel('one', enabled => true);

-- a delivery whose record the retention purged is gone, as its queue row was
DELETE FROM herald.attempt_log WHERE delivery_id = 1000001;
SELECT id, status FROM herald.deliveries WHERE event_id = 1 ORDER BY id;

-- the views read the same for an author (who sees no delivery of another's rule)
CREATE ROLE herald_events_author IN ROLE herald_author;
SET ROLE herald_events_author;
SELECT (SELECT count(*) FROM herald.deliveries) AS deliveries, (SELECT count(*) FROM herald.attempts) AS attempts,
       (SELECT sum(pending) FROM herald.channel_health) AS pending;
RESET ROLE;
DROP ROLE herald_events_author;

-- drop_channel: its pending deliveries, queued or not read yet, are
-- discarded with its attempts and the events no other channel needs
SELECT herald.drop_rule('rule');
SELECT herald.drop_channel('two');
SELECT e.id, e.channel_ids FROM herald.event_log e ORDER BY e.id;
SELECT count(*) AS attempts_left FROM herald.attempt_log WHERE channel_id = 2;

-- channel ids are the last six digits of delivery ids
SELECT setval('herald.channel_defs_id_seq', 999999);
SELECT herald.create_channel('three', 'webhook', 'http://127.0.0.1:9/three');
\set VERBOSITY default

-- payloads: the rows of simple column types are rendered directly, the
-- same document as to_jsonb() gives (NaN and infinities as strings, nulls,
-- dates and times, padded characters), a row stored before a column with
-- a default was added included
SET client_min_messages = error;
CREATE TABLE simple_rows (id int2 PRIMARY KEY, b bool, i int4, l int8, r float4, d float8,
                          n numeric, t text, v varchar(5), c char(4), day date,
                          ts timestamp, tz timestamptz);
SELECT herald.on_change('simple', 'simple_rows', ARRAY['one']);
INSERT INTO simple_rows VALUES
  (1, true, -7, 9000000000, 1.5, 'NaN', 'Infinity', 'a "quoted"\ line', 'abc', 'x', '2024-02-29',
   '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+02'),
  (2, NULL, NULL, NULL, '-Infinity', 1e300, 'NaN', NULL, NULL, NULL, 'infinity', '-infinity', NULL),
  (3, false, 0, -1, 0.1, -0.0, 12.3400, '', '', '', '1999-12-31', '2000-01-01', '2000-01-01 00:00:00+00');
RESET client_min_messages;
-- (stored as jsonb_build_object() stores it: the text of the stored document
-- is that of the canonical one, whose keys jsonb sorts)
SELECT (e.payload -> 'new' ->> 'id')::int AS id, e.payload -> 'new' = to_jsonb(s) AS as_to_jsonb,
       e.payload::text = jsonb_build_object('table', 'public.simple_rows', 'operation', 'INSERT',
                                            'new', to_jsonb(s))::text AS as_stored
  FROM herald.event_log e JOIN simple_rows s ON s.id = (e.payload -> 'new' ->> 'id')::int
 WHERE e.rule = 'simple' ORDER BY e.id;
SELECT payload -> 'new' AS first_row FROM herald.event_log WHERE rule = 'simple' ORDER BY id LIMIT 1;
ALTER TABLE simple_rows ADD COLUMN added int8 NOT NULL DEFAULT 42, DROP COLUMN l;
UPDATE simple_rows SET i = 5 WHERE id = 3;
SELECT e.payload -> 'new' = to_jsonb(s) AS new_as_to_jsonb,
       e.payload -> 'old' = jsonb_set(to_jsonb(s), '{i}', '0') AS old_as_to_jsonb,
       e.payload -> 'old' -> 'added' AS old_added
  FROM herald.event_log e JOIN simple_rows s ON s.id = (e.payload -> 'new' ->> 'id')::int
 WHERE e.rule = 'simple' AND e.type = 'row.updated';

-- the document written directly is jsonb's own: objects past jsonb's
-- stride of stored offsets (41 columns), every key found by lookup, the
-- same size as the canonical document, a long text value stored compressed
SET client_min_messages = error;
SELECT format('CREATE TABLE wide_rows (id int PRIMARY KEY, %s)',
              string_agg(format('c%s %s', g, (ARRAY['int8', 'numeric', 'text', 'bool', 'timestamptz'])[g % 5 + 1]),
                         ', ' ORDER BY g))
  FROM generate_series(1, 40) AS g \gexec
SELECT herald.on_change('wide', 'wide_rows', ARRAY['one']);
RESET client_min_messages;
INSERT INTO wide_rows
SELECT * FROM jsonb_populate_record(NULL::wide_rows,
  (SELECT jsonb_object_agg('c' || g, CASE g % 5 WHEN 0 THEN to_jsonb(g * 1000000007::int8)
                                                WHEN 1 THEN to_jsonb(g / 7.0)
                                                WHEN 2 THEN to_jsonb(repeat('x', g))
                                                WHEN 3 THEN to_jsonb(g % 2 = 0)
                                                ELSE to_jsonb('2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour') END)
     FROM generate_series(1, 40) AS g) || '{"id": 1}');
INSERT INTO wide_rows (id, c2, c7) VALUES (2, repeat('y', 100000), 'short');
SELECT s.id, e.payload -> 'new' = to_jsonb(s) AS as_to_jsonb,
       (SELECT bool_and(e.payload -> 'new' -> k = to_jsonb(s) -> k) FROM jsonb_object_keys(to_jsonb(s)) AS k) AS every_key,
       (SELECT count(*) FROM jsonb_each(e.payload -> 'new')) AS keys,
       e.payload @> jsonb_build_object('new', to_jsonb(s)) AS contains_row,
       s.id <> 1 OR pg_column_size(e.payload) = pg_column_size(
         jsonb_build_object('table', 'public.wide_rows', 'operation', 'INSERT', 'new', to_jsonb(s))) AS same_size
  FROM herald.event_log e JOIN wide_rows s ON s.id = (e.payload -> 'new' ->> 'id')::int
 WHERE e.rule = 'wide' ORDER BY s.id;
-- a time rendered once per value and time zone: the same instant in two
-- zones, rows of one statement sharing a value, an update's old and new
SET timezone = 'UTC';
INSERT INTO wide_rows (id, c4) VALUES (3, '2024-01-01 00:00:00+00');
SET timezone = 'Asia/Kolkata';
INSERT INTO wide_rows (id, c4) VALUES (4, '2024-01-01 00:00:00+00');
INSERT INTO wide_rows (id, c4) SELECT g, '2024-06-01 12:00:00+00' FROM generate_series(5, 7) AS g;
UPDATE wide_rows SET c4 = c4 + interval '1 day' WHERE id = 3;
RESET timezone;
SELECT e.type, e.payload -> 'new' ->> 'id' AS id, e.payload -> 'new' ->> 'c4' AS new_c4,
       e.payload -> 'old' ->> 'c4' AS old_c4
  FROM herald.event_log e WHERE e.rule = 'wide' AND (e.payload -> 'new' ->> 'id')::int > 2 ORDER BY e.id;

-- a partial index of event_log gets the rows of the writers whose values
-- satisfy its predicate: events awaiting a decision are found through it
CREATE TABLE awaited (id int PRIMARY KEY);
SET client_min_messages = error;
SELECT herald.on_change('awaited', 'awaited', ARRAY['one'], followup_after => '1 day');
RESET client_min_messages;
INSERT INTO awaited SELECT generate_series(1, 3);
INSERT INTO simple_rows (id) VALUES (4);
SET enable_seqscan = off;
SELECT count(*) AS awaiting_through_index FROM herald.event_log WHERE awaits_decision;
RESET enable_seqscan;
SELECT count(*) AS awaiting, count(*) FILTER (WHERE rule = 'awaited') AS of_the_rule
  FROM herald.event_log WHERE awaits_decision;

\c herald
DROP DATABASE herald_events;
