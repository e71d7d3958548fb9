-- A database pg_herald's workers do not serve (herald.database names
-- another): CREATE EXTENSION and every declaration there warn, the status
-- view says why, and herald.flush() refuses instead of waiting in vain.
SELECT database, served, reason, served_database, delivery_workers > 0 AS delivery_workers,
       scheduler, library_version = installed_version AS versions_match
  FROM herald.status;
CREATE DATABASE herald_unserved;
\c herald_unserved
CREATE EXTENSION pg_herald;
CREATE TABLE orders (id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel('hook', 'webhook', 'http://127.0.0.1:9/hook');
SELECT herald.on_change('order', 'orders', ARRAY['hook']);
SELECT herald.on_threshold('orders', 'SELECT count(*) FROM orders', '>', 10, ARRAY['hook'],
                           every => '1 hour');
SELECT herald.test_channel('hook') > 0 AS queued;
\set VERBOSITY terse
SELECT herald.flush();
\set VERBOSITY default
SELECT database, served, reason, served_database, delivery_workers, scheduler FROM herald.status;
\c herald
DROP DATABASE herald_unserved;

-- In a database without pg_herald, a schema of the same name is nobody's
-- API: its functions run as their caller, as any function does.
CREATE DATABASE herald_lookalike;
\c herald_lookalike
CREATE ROLE herald_lookalike_owner;
CREATE ROLE herald_lookalike_caller;
CREATE SCHEMA herald AUTHORIZATION herald_lookalike_owner;
SET ROLE herald_lookalike_owner;
CREATE FUNCTION herald.whoami() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT current_user::text $$;
GRANT EXECUTE ON FUNCTION herald.whoami() TO herald_lookalike_caller;
RESET ROLE;
GRANT USAGE ON SCHEMA herald TO herald_lookalike_caller;
SET ROLE herald_lookalike_caller;
SELECT herald.whoami();
RESET ROLE;
\c herald
DROP DATABASE herald_lookalike;
DROP ROLE herald_lookalike_owner, herald_lookalike_caller;
