-- Channels: creation, generated secrets, validation, dropping.
\set SHOW_CONTEXT never
SELECT herald.create_channel(name => 'ops', kind => 'webhook', target => 'https://hooks.example.com/ops');

-- a generated secret is whsec_ + base64 of 32 random bytes
SELECT secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS well_formed,
       length(decode(substr(secret, 7), 'base64')) AS key_bytes,
       max_attempts, retry_delay, timeout, max_concurrency, rate_limit, enabled
  FROM herald.channel_defs WHERE name = 'ops';

-- two generated secrets differ
SELECT herald.generate_secret() <> herald.generate_secret() AS distinct_secrets;

-- a given secret is kept as given
SELECT herald.create_channel('signed', 'webhook', 'http://127.0.0.1:9/x',
                             secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                             max_attempts => 3, retry_delay => '1 second',
                             timeout => '2 seconds',
                             headers => '{"Authorization": "Bearer abc", "X-Team": "growth"}');
SELECT name, secret, max_attempts, retry_delay, timeout, headers
  FROM herald.channel_defs WHERE name = 'signed';

-- validation errors: nothing is stored
\set VERBOSITY default
SELECT herald.create_channel('ops', 'webhook', 'https://hooks.example.com/other');
SELECT herald.create_channel('x', 'carrier_pigeon', 'https://hooks.example.com/');
-- libcurl's diagnosis (the DETAIL) differs between its versions
\set VERBOSITY terse
SELECT herald.create_channel('x', 'webhook', 'not a url');
\set VERBOSITY default
SELECT herald.create_channel('x', 'webhook', 'hooks.example.com/no-scheme');
SELECT herald.create_channel('x', 'webhook', 'ftp://files.example.com/drop');
SELECT herald.create_channel('x', 'webhook', 'file:///etc/passwd');
SELECT herald.create_channel('x', 'webhook', 'gopher://example.com/');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', secret => 'not-a-secret');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', secret => 'whsec_!!!');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', secret => 'whsec_c2hvcnQ=');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', max_attempts => 0);
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', retry_delay => '0');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', timeout => '-1 second');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', headers => '["a"]');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', headers => '{"webhook-id": "forged"}');
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/', headers => '{"X-A": "line\nbreak"}');
SELECT herald.create_channel('', 'webhook', 'https://hooks.example.com/');
SELECT count(*) AS channels FROM herald.channels;

-- dropping
SELECT herald.drop_channel('signed');
SELECT herald.drop_channel('signed');
SELECT name FROM herald.channels ORDER BY name;
SELECT herald.drop_channel('ops');
