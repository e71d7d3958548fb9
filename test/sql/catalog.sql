-- Catalog: what CREATE EXTENSION creates, what pg_dump keeps, what PUBLIC gets.
\set SHOW_CONTEXT never

-- configuration tables are dumped by pg_dump
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension
 WHERE extname = 'pg_herald' ORDER BY 1::text;

-- the views of the SQL contract and their columns
SELECT table_name, string_agg(column_name, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns
 WHERE table_schema = 'herald' AND table_name IN ('rules', 'events', 'deliveries', 'attempts', 'channel_health')
 GROUP BY table_name ORDER BY table_name;

-- the queue is indexed for its access paths
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index WHERE indrelid = 'herald.delivery_queue'::regclass ORDER BY 1::text;

-- nothing is granted to PUBLIC
SELECT count(*) AS public_schema_grants
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'herald' AND a.grantee = 0;
SELECT count(*) AS public_function_grants
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'herald'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_table_grants
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'herald'::regnamespace AND a.grantee = 0;

CREATE ROLE herald_test_nobody;
SET ROLE herald_test_nobody;
SELECT herald.create_channel('x', 'webhook', 'https://hooks.example.com/');
SELECT * FROM herald.channels;
RESET ROLE;
DROP ROLE herald_test_nobody;

-- watched tables keep their triggers until the extension is dropped with CASCADE
CREATE TABLE watched (id int);
SELECT herald.create_channel('catalog', 'webhook', 'https://hooks.example.com/');
SELECT herald.on_change('watched', 'watched', ARRAY['catalog']);
DROP EXTENSION pg_herald;
DROP EXTENSION pg_herald CASCADE;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'watched'::regclass;
INSERT INTO watched VALUES (1);
DROP TABLE watched;
CREATE EXTENSION pg_herald;
