/*
 * pg_herald upgrade from 0.1.0 to 0.2.0: the tables' changes and the
 * objects 0.2.0 drops or redefines with another signature.  The code that
 * follows it (functions, views, triggers, privileges) is the one a fresh
 * install runs; test/t/006_upgrade.pl compares both catalogs.
 */
\echo Use "ALTER EXTENSION pg_herald UPDATE" to load this file. \quit

-- Webhook-ids unique across installations ----------------------------------

CREATE TABLE herald.installation (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9]+$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX installation_one_row ON herald.installation ((true));
COMMENT ON TABLE herald.installation IS 'This installation of pg_herald: the id its webhook-ids carry';
-- 0.1.0 made webhook-ids from the schema's OID: the upgraded installation
-- keeps that id, so that its deliveries keep theirs across retries
INSERT INTO herald.installation (id) SELECT 'herald'::regnamespace::oid::text;
