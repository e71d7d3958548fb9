/*
 * pg_herald upgrade from 0.1.0 to 0.2.0: the tables' changes and the
 * objects 0.2.0 drops or redefines with another signature.  The code that
 * follows it (functions, views, triggers, privileges) is the one a fresh
 * install runs; test/t/006_upgrade.pl compares both catalogs.
 */
\echo Use "ALTER EXTENSION pg_herald UPDATE" to load this file. \quit
