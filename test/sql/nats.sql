-- nats channels: declaration.  A target is nats:// or tls://, one or more
-- servers, then a subject template; the secret is user:password or a
-- token.  Every refused declaration stores nothing.
\set SHOW_CONTEXT never
SELECT herald.create_channel(name => 'stream', kind => 'nats',
                             target => 'nats://127.0.0.1:4222,localhost,[::1]:4223/orders.{{rule}}.{{type}}',
                             secret => 'pg_herald:s3cret', headers => '{"X-Team": "sales"}');
SELECT herald.create_channel('stream-tls', 'nats', 'tls://nats.example.com/events.all', secret => 'a-token');
SELECT name, kind, target, secret IS NOT NULL AS has_secret, headers
  FROM herald.channel_defs WHERE kind = 'nats' ORDER BY id;

-- targets
SELECT herald.create_channel('x', 'nats', 'http://127.0.0.1:4222/orders');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1:4222');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1:4222/');
SELECT herald.create_channel('x', 'nats', 'nats://user:pw@127.0.0.1:4222/orders');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1:0/orders');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1:65536/orders');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1:42a/orders');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1,/orders');
SELECT herald.create_channel('x', 'nats', 'nats://[::1/orders');
SELECT herald.create_channel('x', 'nats', 'nats://ho st/orders');
SELECT herald.create_channel('x', 'nats', 'nats://' || repeat('h,', 16) || 'h/orders');

-- subjects: no empty token, no space, no wildcard; placeholders are
-- checked like every channel template
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders..{{type}}');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/.orders');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.*');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.>');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders big');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.{{type');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.' || repeat('a', 1100));
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.{{nonsense}}');
SELECT herald.create_channel('x', 'nats', 'nats://127.0.0.1/orders.{{new.id}}');
SELECT herald.create_channel('filters', 'nats', 'nats://127.0.0.1/orders.{{rule | upper}}.{{key}}');

-- secrets and headers
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => '');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => E'user:pass\nword');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => E'-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', headers => '{"Nats-Msg-Id": "1"}');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', headers => '{"webhook-id": "1"}');

-- alter_channel checks the same way
SELECT herald.alter_channel('stream', target => 'nats://127.0.0.1/orders.>');
SELECT herald.alter_channel('stream', target => 'nats://127.0.0.1:4333/orders.{{type}}');
SELECT name, target FROM herald.channel_defs WHERE kind = 'nats' ORDER BY id;

-- nothing else was stored
SELECT count(*) AS stored FROM herald.channel_defs WHERE name IN ('x', 'y');

-- the secret never shows in the channels view
SELECT count(*) AS leaks FROM herald.channels c WHERE c::text LIKE '%s3cret%';

SELECT herald.drop_channel('stream');
SELECT herald.drop_channel('stream-tls');
SELECT herald.drop_channel('filters');
