/*
 * pg_herald upgrade from 0.1.0 to 0.2.0, first part: the tables' changes
 * and the objects 0.2.0 drops or redefines with another signature.  The
 * Makefile appends the code (functions, views, triggers, privileges) a
 * fresh install runs, to make the installed pg_herald--0.1.0--0.2.0.sql;
 * test/t/006_upgrade.pl compares both catalogs.
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

-------------------------------------------------------------------------------
-- Parameter ranges
--
-- 0.2.0 bounds every interval and number of the API (README, "Parameter
-- ranges").  A value 0.1.0 stored outside its range (a timeout of 300000
-- years broke the claim for every channel) is brought to the nearest bound,
-- with a warning naming the channel or rule (an extension script shows no
-- notice); then the tables' checks become the ranges, validated, so that
-- the catalog is a fresh install's.
-------------------------------------------------------------------------------

DO $$
DECLARE
    r record;
    v_name text;
BEGIN
    FOR r IN
        SELECT * FROM (VALUES
            ('channel', 'channel_defs', 'max_attempts', '1', '100'),
            ('channel', 'channel_defs', 'retry_delay', '10 milliseconds', '1 day'),
            ('channel', 'channel_defs', 'timeout', '100 milliseconds', '10 minutes'),
            ('channel', 'channel_defs', 'max_concurrency', '1', '1000'),
            ('channel', 'channel_defs', 'rate_limit', '0.001', '1000000'),
            ('rule', 'rule_defs', 'every', '1 second', '366 days'),
            ('rule', 'rule_defs', 'pending_for', '0', '30 days'),
            ('rule', 'rule_defs', 'repeat_every', '1 second', '30 days'),
            ('rule', 'rule_defs', 'min_interval', '0', '1 day'),
            ('rule', 'rule_defs', 'query_timeout', '10 milliseconds', '1 hour'),
            ('rule', 'rule_defs', 'followup_after', '1 second', '30 days'),
            ('rule', 'rule_defs', 'followup_every', '1 second', '30 days'),
            ('rule', 'rule_defs', 'meeting', '5 minutes', '8 hours'))
            AS t(what, tbl, col, low, high)
    LOOP
        FOR v_name IN EXECUTE format(
            'UPDATE herald.%1$I x SET %2$I = least(greatest(x.%2$I, %3$L), %4$L)'
            ' WHERE NOT x.%2$I BETWEEN %3$L AND %4$L RETURNING x.name',
            r.tbl, r.col, r.low, r.high)
        LOOP
            -- quoted as JSON: a name 0.1.0 accepted may hold a newline or be huge
            RAISE WARNING '% %: % was outside its range (% to %), set to the nearest bound',
                         r.what, to_jsonb(left(v_name, 200))::text, r.col, r.low, r.high;
        END LOOP;
    END LOOP;
END;
$$;

-- Timers set from such values: due at the latest when the ranges allow
-- (a pending period or a reminder 30 days ahead, a retry 1 day ahead).
UPDATE herald.rule_instances i SET next_check_at = now() + interval '30 days'
 WHERE i.next_check_at > now() + interval '30 days';
UPDATE herald.delivery_queue d SET next_attempt_at = now() + interval '1 day'
 WHERE d.status = 'pending' AND d.next_attempt_at > now() + interval '1 day';

ALTER TABLE herald.channel_defs
    DROP CONSTRAINT channel_defs_max_attempts_check,
    ADD CONSTRAINT channel_defs_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 100),
    DROP CONSTRAINT channel_defs_retry_delay_check,
    ADD CONSTRAINT channel_defs_retry_delay_check
        CHECK (retry_delay BETWEEN '10 milliseconds' AND '1 day'),
    DROP CONSTRAINT channel_defs_timeout_check,
    ADD CONSTRAINT channel_defs_timeout_check
        CHECK (timeout BETWEEN '100 milliseconds' AND '10 minutes'),
    DROP CONSTRAINT channel_defs_max_concurrency_check,
    ADD CONSTRAINT channel_defs_max_concurrency_check CHECK (max_concurrency BETWEEN 1 AND 1000),
    DROP CONSTRAINT channel_defs_rate_limit_check,
    ADD CONSTRAINT channel_defs_rate_limit_check CHECK (rate_limit BETWEEN 0.001 AND 1000000);

ALTER TABLE herald.rule_defs
    DROP CONSTRAINT rule_defs_every_check,
    ADD CONSTRAINT rule_defs_every_check CHECK (every BETWEEN '1 second' AND '366 days'),
    DROP CONSTRAINT rule_defs_pending_for_check,
    ADD CONSTRAINT rule_defs_pending_for_check CHECK (pending_for BETWEEN '0' AND '30 days'),
    DROP CONSTRAINT rule_defs_repeat_every_check,
    ADD CONSTRAINT rule_defs_repeat_every_check
        CHECK (repeat_every BETWEEN '1 second' AND '30 days'),
    DROP CONSTRAINT rule_defs_min_interval_check,
    ADD CONSTRAINT rule_defs_min_interval_check CHECK (min_interval BETWEEN '0' AND '1 day'),
    DROP CONSTRAINT rule_defs_query_timeout_check,
    ADD CONSTRAINT rule_defs_query_timeout_check
        CHECK (query_timeout BETWEEN '10 milliseconds' AND '1 hour'),
    DROP CONSTRAINT rule_defs_followup_after_check,
    ADD CONSTRAINT rule_defs_followup_after_check
        CHECK (followup_after BETWEEN '1 second' AND '30 days'),
    DROP CONSTRAINT rule_defs_followup_every_check,
    ADD CONSTRAINT rule_defs_followup_every_check
        CHECK (followup_every BETWEEN '1 second' AND '30 days'),
    DROP CONSTRAINT rule_defs_meeting_check,
    ADD CONSTRAINT rule_defs_meeting_check CHECK (meeting BETWEEN '5 minutes' AND '8 hours');

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

-------------------------------------------------------------------------------
-- herald._evaluate() takes the error of an evaluation that failed outside
-- its metric (a new signature: the old one goes)
-------------------------------------------------------------------------------
DROP FUNCTION herald._evaluate(integer);

-------------------------------------------------------------------------------
-- Deciding from the message: choices per rule, Slack interactivity, decisions
-- recorded from links and Slack, the keys that sign links.  The functions
-- that take the new parameters have new signatures: the old ones go (the
-- BEGIN ATOMIC wrapper first, it depends on what it calls).
-------------------------------------------------------------------------------
ALTER TABLE herald.channel_defs ADD COLUMN slack_signing_secret text;
-- SQL-standard functions on the row type keep the table from changing
DROP FUNCTION herald._sync_rule_triggers(herald.rule_defs);
DROP FUNCTION herald._threshold_payload(herald.rule_defs, herald.rule_instances, herald.rule_instances);
DROP FUNCTION herald._meeting(herald.rule_defs, text, herald.rule_instances);
ALTER TABLE herald.rule_defs
    ADD COLUMN choices text[] CHECK (cardinality(choices) BETWEEN 1 AND 10),
    ADD COLUMN announce_decisions boolean NOT NULL DEFAULT true;
ALTER TABLE herald.decision_log
    ADD COLUMN choice        text,
    ADD COLUMN identified_by text NOT NULL DEFAULT 'sql' CHECK (identified_by IN ('sql', 'link', 'slack')),
    ADD COLUMN actor_id      text,
    ADD COLUMN channel_id    integer,
    ADD COLUMN action_owner  text,
    ADD COLUMN action_due    date,
    ADD COLUMN request_key   text UNIQUE,
    ADD COLUMN response_url  text;

CREATE TABLE herald.link_keys (
    id          serial PRIMARY KEY,
    secret      bytea NOT NULL CHECK (length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
COMMENT ON TABLE herald.link_keys IS 'Keys that sign the links of messages; readable by the workers only';
INSERT INTO herald.link_keys (secret)
    SELECT pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');

DROP FUNCTION herald.on_threshold(text, text, text, numeric, text[], regclass[], interval, text,
                                  numeric, numeric, interval, interval, interval, text, interval,
                                  interval, interval, interval);
DROP FUNCTION herald._declare_threshold(text, text, text, numeric, text[], regclass[], interval,
                                        text, numeric, numeric, interval, interval, interval, text,
                                        interval, interval, interval, interval, text);
DROP FUNCTION herald.on_change(text, regclass, text[], text[], text, text, interval, interval);
DROP FUNCTION herald.create_channel(text, text, text, text, integer, interval, interval, jsonb,
                                    double precision, integer, text[], text, text);
DROP FUNCTION herald.alter_channel(text, text, text, integer, interval, interval, jsonb,
                                   double precision, integer, text[], text, text, boolean, interval);
DROP FUNCTION herald.decide(bigint, text, text, text);
DROP FUNCTION herald._emit(integer, text, jsonb, bigint);
-- decision_report gains columns (per choice, per channel)
DROP FUNCTION herald.decision_report(timestamptz, timestamptz);

-------------------------------------------------------------------------------
-- One row per event
--
-- The writer appends the event only, naming its channels (channel_ids); a
-- delivery is (event, channel), its id computed (herald._delivery_id), and
-- delivery_queue keeps only the exceptions.  0.1.0's deliveries are all
-- queue rows: they take their computed ids (their attempts follow), their
-- events name their channels, and the delivery workers start after the
-- last event 0.1.0 recorded, so that those events go out through their
-- queue rows only, pending ones after the update.  0.1.0 wrote one
-- delivery per event and channel (capture and herald._emit from the rule's
-- channels, test_channel one): the computed ids are unique.
--
-- A webhook-id names its delivery's id: a pending delivery that 0.1.0
-- already tried once is retried under its new id.
-------------------------------------------------------------------------------

-- the same as pg_herald.sql's (the code appended below replaces it)
CREATE FUNCTION herald._delivery_id(event_id bigint, channel_id integer) RETURNS bigint
LANGUAGE sql IMMUTABLE
RETURN event_id * 1000000 + channel_id;

ALTER TABLE herald.channel_defs
    ADD CONSTRAINT channel_defs_id_check CHECK (id BETWEEN 1 AND 999999);

-- silenced events are purged with the others, by id: their index goes
DROP INDEX herald.event_log_silenced;

-- ids from herald._append_event(); the sequence stays, for a server where
-- pg_herald is not preloaded
ALTER TABLE herald.event_log
    ALTER COLUMN id DROP DEFAULT,
    ADD COLUMN channel_ids integer[] NOT NULL DEFAULT '{}';
UPDATE herald.event_log e SET channel_ids = d.channel_ids
  FROM (SELECT q.event_id, array_agg(q.channel_id ORDER BY q.channel_id) AS channel_ids
          FROM herald.delivery_queue q GROUP BY q.event_id) d
 WHERE e.id = d.event_id;

-- attempts of a delivery that no longer exists (recorded after
-- drop_channel): no view showed them, and their old ids could name another
-- delivery now
DELETE FROM herald.attempt_log a
 WHERE NOT EXISTS (SELECT 1 FROM herald.delivery_queue d WHERE d.id = a.delivery_id);
UPDATE herald.attempt_log a SET delivery_id = herald._delivery_id(d.event_id, d.channel_id)
  FROM herald.delivery_queue d
 WHERE d.id = a.delivery_id;
ALTER TABLE herald.attempt_log DROP COLUMN id;   -- its sequence goes with it

-- the new ids may be old ones of other rows: unique once all are set
ALTER TABLE herald.delivery_queue DROP CONSTRAINT delivery_queue_pkey;
UPDATE herald.delivery_queue d SET id = herald._delivery_id(d.event_id, d.channel_id);
ALTER TABLE herald.delivery_queue
    ADD CONSTRAINT delivery_queue_pkey PRIMARY KEY (id),
    ALTER COLUMN id DROP DEFAULT;
DROP SEQUENCE herald.delivery_queue_id_seq;
-- leases of 0.1.0's workers, which no longer run: due again
UPDATE herald.delivery_queue d SET leased_by = NULL, next_attempt_at = now()
 WHERE d.status = 'pending' AND d.leased_by IS NOT NULL;

CREATE TABLE herald.delivery_cursors (
    slot        integer PRIMARY KEY,
    workers     integer NOT NULL,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO herald.delivery_cursors (slot, workers, position)
    SELECT 0, 1, coalesce(max(e.id), 0) FROM herald.event_log e;

SELECT pg_catalog.pg_extension_config_dump('herald.rule_instances', '');
SELECT pg_catalog.pg_extension_config_dump('herald.evaluation_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.evaluation_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.event_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.delivery_queue', '');
SELECT pg_catalog.pg_extension_config_dump('herald.attempt_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.delivery_cursors', '');
SELECT pg_catalog.pg_extension_config_dump('herald.decision_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.decision_log_id_seq', '');

-- Altering rules, and the history of dropped rules (herald.alter_rule,
-- herald.drop_rule)
ALTER TABLE herald.rule_defs ADD COLUMN altered_at timestamptz;

-- Every change made with herald.alter_rule(): who (herald._invoker()),
-- when, and what (per parameter changed, {"old": ..., "new": ...}), with
-- the episodes that were open then (their rule.fired events, for
-- herald.timeline).  Kept after the rule is dropped; purged by
-- herald.retention.
CREATE TABLE herald.rule_change_log (
    id          bigserial PRIMARY KEY,
    rule_id     integer NOT NULL,       -- no foreign key: outlives the rule
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  name NOT NULL,
    changes     jsonb NOT NULL,
    open_event_ids bigint[] NOT NULL DEFAULT '{}'
);
CREATE INDEX rule_change_log_rule ON herald.rule_change_log (rule_id, changed_at);
CREATE INDEX rule_change_log_at ON herald.rule_change_log (changed_at);

-- Rules dropped with herald.drop_rule(): what their history (events,
-- evaluations, changes, decisions) needs to stay readable by their owner.
-- A row goes once retention has purged all of that history.
CREATE TABLE herald.dropped_rules (
    id          integer PRIMARY KEY,    -- the rule's id (rule_defs_id_seq: never reused)
    name        text NOT NULL,
    kind        text NOT NULL,
    owner       regrole NOT NULL,
    created_at  timestamptz NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    dropped_by  name NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('herald.rule_change_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.rule_change_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.dropped_rules', '');

-- Follow-ups with context, once per episode: a threshold rule says whether
-- an episode's follow-ups stop when it resolves (stop) or ask once more
-- (ask_once); an escalation no longer opens a follow-up stream of its own
-- when its rule.fired event has one (asked, or still awaiting a decision)
ALTER TABLE herald.rule_defs
    ADD COLUMN followup_on_resolve text NOT NULL DEFAULT 'stop'
        CHECK (followup_on_resolve IN ('stop', 'ask_once'));
UPDATE herald.event_log x SET awaits_decision = NULL
  FROM herald.event_log f
 WHERE x.awaits_decision AND x.type = 'rule.escalated'
   AND f.id = (x.payload ->> 'fired_event_id')::bigint
   AND (f.awaits_decision OR f.asked_at IS NOT NULL);

-- The self-check of herald.rules (durations, next evaluation) and
-- herald.decision_report()'s by_key: views and functions only, defined by
-- the code appended below; no table changes.

-------------------------------------------------------------------------------
-- Facts that explain an event: a row rule's facts (the columns its messages
-- show, in order; herald.on_change and herald.alter_rule take facts =>)
-------------------------------------------------------------------------------
ALTER TABLE herald.rule_defs ADD COLUMN facts text[] CHECK (cardinality(facts) BETWEEN 1 AND 8);

-- Messages per event type and formatting filters (herald.on_change,
-- herald.on_threshold and herald.alter_rule take messages; channels take
-- the time zone their times are shown in)
ALTER TABLE herald.rule_defs
    ADD COLUMN messages jsonb CHECK (jsonb_typeof(messages) = 'object');
ALTER TABLE herald.channel_defs ADD COLUMN timezone text;

-------------------------------------------------------------------------------
-- The nats channel kind: events published to NATS JetStream
-------------------------------------------------------------------------------
ALTER TABLE herald.channel_defs
    DROP CONSTRAINT channel_defs_kind_check,
    ADD CONSTRAINT channel_defs_kind_check
        CHECK (kind IN ('webhook', 'slack', 'teams', 'google_chat', 'email', 'notify', 'nats'));

-- nats channels take a .creds secret (herald._check_nats_secret, called by
-- herald._check_channel): functions only, defined by the code appended
-- below; no table changes.
