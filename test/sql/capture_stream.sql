-- Capture streams the rows of a statement: with its transition tables
-- spilled to disk, every row gives one event per rule, in the order of the
-- rows; a condition selects rows by position, UPDATE keeps old and new
-- rows paired; the events name their rule's channels, none while silenced.
\set SHOW_CONTEXT never
SELECT herald.create_channel('stream-bus', 'webhook', test.url('/stream/bus'));
CREATE TABLE stream_rows (id int PRIMARY KEY, label text, pad text);
SELECT herald.on_change('stream-all', 'stream_rows', ARRAY['stream-bus']);
SELECT herald.on_change('stream-odd', 'stream_rows', ARRAY['stream-bus'],
                        condition => 'NEW.id % 2 = 1 OR OLD.id % 2 = 1');

-- 20,000 rows of 200 bytes do not fit in 64kB of work_mem; the condition
-- gets the time to read them
SET work_mem = '64kB';
SET herald.condition_timeout = '20s';
INSERT INTO stream_rows SELECT g, 'row ' || g, repeat('x', 200) FROM generate_series(1, 20000) g;
SELECT rule, count(*) AS events, count(DISTINCT payload -> 'new' ->> 'id') AS rows,
       min((payload -> 'new' ->> 'id')::int) AS first, max((payload -> 'new' ->> 'id')::int) AS last,
       bool_and(payload -> 'new' ->> 'label' = 'row ' || (payload -> 'new' ->> 'id')) AS rows_whole,
       bool_and((payload -> 'new' ->> 'id')::int % 2 = 1) AS all_odd
  FROM herald.events WHERE rule LIKE 'stream-%' GROUP BY rule ORDER BY rule;
-- event ids follow the order of the rows
SELECT rule, bool_and(ordered) AS in_row_order
  FROM (SELECT rule, (payload -> 'new' ->> 'id')::int >
               lag((payload -> 'new' ->> 'id')::int, 1, 0) OVER (PARTITION BY rule ORDER BY id) AS ordered
          FROM herald.events WHERE rule LIKE 'stream-%') AS x
 GROUP BY rule ORDER BY rule;

-- UPDATE pairs each old row with its new one
UPDATE stream_rows SET label = 'new ' || id, id = id + 100000;
SELECT rule, count(*) AS events,
       bool_and((payload -> 'old' ->> 'id')::int + 100000 = (payload -> 'new' ->> 'id')::int) AS paired,
       bool_and(payload -> 'old' ->> 'label' = 'row ' || (payload -> 'old' ->> 'id')) AS old_rows,
       bool_and(payload -> 'new' ->> 'label' = 'new ' || (payload -> 'old' ->> 'id')) AS new_rows,
       bool_and((payload -> 'old' ->> 'id')::int % 2 = 1) AS all_odd
  FROM herald.events WHERE type = 'row.updated' AND rule LIKE 'stream-%' GROUP BY rule ORDER BY rule;

-- DELETE: the old rows
DELETE FROM stream_rows WHERE id <= 105000;
SELECT rule, count(*) AS events, min((payload -> 'old' ->> 'id')::int) AS first,
       max((payload -> 'old' ->> 'id')::int) AS last,
       bool_and(payload -> 'new' IS NULL) AS no_new
  FROM herald.events WHERE type = 'row.deleted' AND rule LIKE 'stream-%' GROUP BY rule ORDER BY rule;
RESET work_mem;
RESET herald.condition_timeout;

-- the events go to the rule's channels; a silenced rule's to none
SELECT DISTINCT e.channel_ids = ARRAY[c.id] AS to_the_channel, e.silenced_by IS NULL AS not_silenced
  FROM herald.event_log e, herald.channel_defs c
 WHERE e.rule LIKE 'stream-%' AND c.name = 'stream-bus';
SELECT herald.silence('stream-odd', now() + interval '1 hour', 'stream test') > 0 AS silenced;
INSERT INTO stream_rows VALUES (1, 'one', ''), (2, 'two', '');
SELECT e.rule, e.channel_ids = ARRAY[(SELECT c.id FROM herald.channel_defs c WHERE c.name = 'stream-bus')]
         AS to_the_channel, cardinality(e.channel_ids) AS channels,
       e.silenced_by IS NOT NULL AS silenced_by_set, e.awaits_decision
  FROM herald.event_log e
 WHERE e.rule LIKE 'stream-%' AND e.type = 'row.inserted' AND e.payload -> 'new' ->> 'label' IN ('one', 'two')
 ORDER BY e.id;
SELECT herald.unsilence('stream-odd');

-- a statement touching no row captures nothing
SELECT max(id) AS last_event FROM herald.event_log \gset
UPDATE stream_rows SET label = label WHERE false;
DELETE FROM stream_rows WHERE false;
SELECT count(*) AS events FROM herald.event_log WHERE id > :last_event;

SELECT herald.drop_rule('stream-all'), herald.drop_rule('stream-odd');
-- (its deliveries may not all be done: how many it discards is not the point here)
SET client_min_messages = warning;
SELECT herald.drop_channel('stream-bus');
RESET client_min_messages;
DROP TABLE stream_rows;
