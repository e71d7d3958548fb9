/*
 * pg_herald upgrade from 0.1.0 to 0.2.0: the tables' changes and the
 * objects 0.2.0 drops or redefines with another signature.  The code that
 * follows it (functions, views, triggers, privileges) is the one a fresh
 * install runs; test/t/006_upgrade.pl compares both catalogs.
 */
\echo Use "ALTER EXTENSION pg_herald UPDATE" to load this file. \quit

-------------------------------------------------------------------------------
-- Rules on dropped tables: disabled by an sql_drop event trigger
-------------------------------------------------------------------------------

ALTER TABLE herald.rule_defs ADD COLUMN table_dropped_at timestamptz;
CREATE FUNCTION herald._on_sql_drop() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_on_sql_drop';
CREATE EVENT TRIGGER herald_sql_drop ON sql_drop
    EXECUTE FUNCTION herald._on_sql_drop();
-- rules whose tables were dropped under 0.1.0, as the trigger would have
UPDATE herald.rule_defs r
   SET enabled = false, table_dropped_at = pg_catalog.now()
 WHERE EXISTS (SELECT 1 FROM pg_catalog.unnest(r.on_table || coalesce(r.watch, '{}')) AS t
                WHERE t IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t));
