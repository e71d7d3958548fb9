-- nats channels: declaration.  A target is nats:// or tls://, one or more
-- servers, then a subject template; the secret is user:password, a token
-- or a .creds content.  Every refused declaration stores nothing.
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
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => repeat('t', 4097));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => E'-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n');

-- .creds secrets: a user JWT (three base64url parts) and a user nkey seed
-- (SU, 58 base32 characters with their checksum), each in its block; the
-- seed below encodes the bytes 0 to 31
\set jwt 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQUJDIn0.c2ln-_bmF0dXJl'
\set seed 'SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y'
CREATE FUNCTION pg_temp.creds(jwt text, seed text) RETURNS text LANGUAGE sql AS $$
SELECT format(E'-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n'
              '************************* IMPORTANT *************************\n'
              'NKEY Seed printed below can be used to sign and prove identity.\n\n'
              '-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n', jwt, seed)
$$;
SELECT herald.create_channel('creds', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds(:'jwt', :'seed'));
SELECT herald.alter_channel('creds', secret => E'\r\n' || replace(pg_temp.creds(:'jwt', :'seed'), E'\n', E'\r\n'));
-- the JWT
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds('eyJ0.eyJ0', :'seed'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds('eyJ0.eyJ0.c2ln.c2ln', :'seed'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds('eyJ0..c2ln', :'seed'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds('eyJ0.eyJ0.c2ln+/==', :'seed'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds('eyJ0.ey J0.c2ln', :'seed'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds('', :'seed'));
-- the seed: an account seed, a wrong checksum, one character short, lower case
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => pg_temp.creds(:'jwt', 'SAAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4HYMHI'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => pg_temp.creds(:'jwt', 'SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776A'));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds(:'jwt', left(:'seed', 57)));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', secret => pg_temp.creds(:'jwt', lower(:'seed')));
-- a block missing, or without its end, or too long a content
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => split_part(pg_temp.creds(:'jwt', :'seed'), '*', 1));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => E'-----BEGIN USER NKEY SEED-----\n' || :'seed' || E'\n------END USER NKEY SEED------\n');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => E'-----BEGIN NATS USER JWT-----\n' || :'jwt' || E'\n');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders',
                             secret => pg_temp.creds(:'jwt', :'seed') || repeat('*', 16384));
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', headers => '{"Nats-Msg-Id": "1"}');
SELECT herald.create_channel('y', 'nats', 'nats://127.0.0.1/orders', headers => '{"webhook-id": "1"}');

-- alter_channel checks the same way
SELECT herald.alter_channel('stream', target => 'nats://127.0.0.1/orders.>');
SELECT herald.alter_channel('stream', target => 'nats://127.0.0.1:4333/orders.{{type}}');
SELECT name, target FROM herald.channel_defs WHERE kind = 'nats' ORDER BY id;

-- nothing else was stored
SELECT count(*) AS stored FROM herald.channel_defs WHERE name IN ('x', 'y');

-- the secret never shows in the channels view
SELECT count(*) AS leaks FROM herald.channels c
 WHERE c::text LIKE '%s3cret%' OR c::text LIKE '%' || :'seed' || '%' OR c::text LIKE '%' || :'jwt' || '%';

SELECT herald.drop_channel('stream');
SELECT herald.drop_channel('stream-tls');
SELECT herald.drop_channel('filters');
SELECT herald.drop_channel('creds');
