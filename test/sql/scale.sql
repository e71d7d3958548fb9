-- Delivery at scale: per-channel isolation and rate limits, retention,
-- channel health.
\set SHOW_CONTEXT never
CREATE TABLE readings (id int, sensor text);

-- a hanging endpoint holds at most max_concurrency requests and does not
-- delay another channel
SELECT herald.create_channel('hang', 'webhook', test.url('/scale/hang?delay_ms=1500'),
                             max_concurrency => 2);
SELECT herald.create_channel('quick', 'webhook', test.url('/scale/quick'));
SELECT herald.on_change('readings', 'readings', ARRAY['hang', 'quick'], ARRAY['INSERT']);
INSERT INTO readings SELECT g, 's' || g FROM generate_series(1, 4) g;
SELECT herald.flush('60 seconds');
SELECT channel, status, count(*) FROM herald.deliveries
 WHERE channel IN ('hang', 'quick') GROUP BY 1, 2 ORDER BY 1;
-- every quick delivery finished before the first hanging one
SELECT max(q.finished_at) < min(h.finished_at) AS quick_not_delayed
  FROM herald.deliveries q, herald.deliveries h
 WHERE q.channel = 'quick' AND h.channel = 'hang';
-- the hanging channel never had more than two requests in flight: they
-- started in two waves, one request time apart
SELECT count(*) FILTER (WHERE a.started_at < w.first + interval '1 second') AS first_wave,
       count(*) FILTER (WHERE a.started_at >= w.first + interval '1 second') AS second_wave
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id,
       (SELECT min(a2.started_at) AS first
          FROM herald.attempts a2 JOIN herald.deliveries d2 ON d2.id = a2.delivery_id
         WHERE d2.channel = 'hang') w
 WHERE d.channel = 'hang';
SELECT herald.drop_rule('readings');

-- a rate limit spaces deliveries: 2 per second, a burst of 2 allowed
SELECT herald.create_channel('metered', 'webhook', test.url('/scale/metered'), rate_limit => 2);
SELECT herald.on_change('metered', 'readings', ARRAY['metered'], ARRAY['INSERT']);
INSERT INTO readings SELECT g, 'm' || g FROM generate_series(1, 5) g;
SELECT herald.flush('60 seconds');
SELECT count(*) AS delivered,
       max(a.started_at) - min(a.started_at) >= interval '1.4 seconds' AS spaced
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE d.channel = 'metered' AND d.status = 'delivered';
SELECT herald.drop_rule('metered');

-- validation of the limits
\set VERBOSITY default
SELECT herald.create_channel('x', 'webhook', test.url('/x'), rate_limit => 0);
SELECT herald.create_channel('x', 'webhook', test.url('/x'), rate_limit => 'NaN');
SELECT herald.create_channel('x', 'webhook', test.url('/x'), rate_limit => 'Infinity');
SELECT herald.create_channel('x', 'webhook', test.url('/x'), max_concurrency => 0);

-- channel health: the queue and the last hour's attempts, per channel
SELECT channel, pending, in_flight, delivered, dead, attempts_1h, success_rate_1h,
       latency_p50_ms > 0 AS has_p50, latency_p99_ms >= latency_p50_ms AS p99_above_p50,
       oldest_pending_age
  FROM herald.channel_health WHERE channel IN ('hang', 'quick', 'metered') ORDER BY channel;

-- retention: finished deliveries, their attempts and events are purged
ALTER SYSTEM SET herald.retention = 0;
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM herald.deliveries WHERE status = 'delivered');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered_left,
       count(*) FILTER (WHERE status = 'dead') AS dead_kept
  FROM herald.deliveries;
SELECT count(*) AS attempts_left FROM herald.attempts a
  JOIN herald.deliveries d ON d.id = a.delivery_id WHERE d.status = 'delivered';
-- events go with their last delivery, unless someone recorded a decision about them
SELECT count(*) AS orphan_events FROM herald.events e
 WHERE NOT EXISTS (SELECT 1 FROM herald.deliveries d WHERE d.event_id = e.id)
   AND NOT EXISTS (SELECT 1 FROM herald.decisions x WHERE x.event_id = e.id);
SELECT count(*) > 0 AS decided_events_kept FROM herald.events e
 WHERE EXISTS (SELECT 1 FROM herald.decisions x WHERE x.event_id = e.id);
ALTER SYSTEM RESET herald.retention;
SELECT pg_reload_conf();

DROP TABLE readings;
