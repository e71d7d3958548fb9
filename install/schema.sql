/*
 * pg_herald install script.
 *
 * Catalog (who owns what):
 *   channels, rule_defs, rule_channels   configuration, kept by pg_dump
 *   event_log                            one row per event, appended by
 *                                        herald._append_event() (C) alone;
 *                                        delivery workers read it in id order
 *   delivery_cursors                     how far each delivery worker read
 *   attempt_log                          every try of a delivery
 *   delivery_queue                       the exceptions: deliveries that
 *                                        failed once, were held back or
 *                                        redelivered
 * A delivery is (event, channel): its id is herald._delivery_id(event,
 * channel), computed, never stored apart from the tables above.  Views give
 * the stable names of the SQL contract: herald.rules, herald.events,
 * herald.deliveries, herald.attempts.  The history (events, deliveries,
 * attempts, evaluations, decisions) is kept by pg_dump with its ids.
 *
 * Nothing is granted to PUBLIC.
 */
\echo Use "CREATE EXTENSION pg_herald" to load this file. \quit

-------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------

CREATE TABLE herald.channel_defs (
    -- at most six digits: the low digits of a delivery id (herald._delivery_id)
    id              serial PRIMARY KEY CHECK (id BETWEEN 1 AND 999999),
    name            text NOT NULL UNIQUE CHECK (name <> ''),
    kind            text NOT NULL
                    CHECK (kind IN ('webhook', 'slack', 'teams', 'google_chat', 'email', 'notify',
                                    'nats')),
    target          text NOT NULL,
    secret          text,
    previous_secret text,             -- still signs until previous_secret_until
    previous_secret_until timestamptz,
    headers         jsonb,
    recipients      text[],           -- email
    sender          text,             -- email
    subject         text,             -- email: a template
    -- the ranges of README's "Parameter ranges", checked by the API with
    -- herald._check_range()
    max_attempts    integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    retry_delay     interval NOT NULL CHECK (retry_delay BETWEEN '10 milliseconds' AND '1 day'),
    timeout         interval NOT NULL CHECK (timeout BETWEEN '100 milliseconds' AND '10 minutes'),
    max_concurrency integer NOT NULL DEFAULT 32 CHECK (max_concurrency BETWEEN 1 AND 1000),
    rate_limit      double precision CHECK (rate_limit BETWEEN 0.001 AND 1000000),   -- per second
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      name NOT NULL,
    slack_signing_secret text,        -- slack: its app's signing secret; buttons are interactive
    timezone        text              -- the zone templates show times in (NULL: herald.timezone)
);
COMMENT ON TABLE herald.channel_defs IS 'Destinations of pg_herald messages, with their secrets and delivery policy';

CREATE TABLE herald.rule_defs (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    kind        text NOT NULL CHECK (kind IN ('row', 'threshold')),
    owner       regrole NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    message     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- row rules
    on_table    regclass,
    operations  text[],
    condition   text,
    -- threshold rules
    metric            text,
    grouped           boolean,     -- the metric returns a key column first
    search_path       text,        -- the declaring session's, used to run the metric
    op                text CHECK (op IN ('>', '>=', '<', '<=', '=', '<>')),
    threshold         numeric,
    warning_threshold numeric,
    recover_threshold numeric,
    watch             regclass[],
    -- the ranges of README's "Parameter ranges", checked by the API with
    -- herald._check_range()
    every             interval CHECK (every BETWEEN '1 second' AND '366 days'),
    pending_for       interval CHECK (pending_for BETWEEN '0' AND '30 days'),
    repeat_every      interval CHECK (repeat_every BETWEEN '1 second' AND '30 days'),
    min_interval      interval NOT NULL DEFAULT '0' CHECK (min_interval BETWEEN '0' AND '1 day'),
    no_data           text NOT NULL DEFAULT 'ok' CHECK (no_data IN ('ok', 'alert', 'keep')),
    query_timeout     interval CHECK (query_timeout BETWEEN '10 milliseconds' AND '1 hour'),
    -- the decision loop, both kinds
    followup_after    interval CHECK (followup_after BETWEEN '1 second' AND '30 days'),
    followup_every    interval CHECK (followup_every BETWEEN '1 second' AND '30 days'),
    meeting           interval CHECK (meeting BETWEEN '5 minutes' AND '8 hours'),   -- threshold rules
    -- a table the rule uses was dropped then: disabled, for good
    table_dropped_at  timestamptz,
    -- the answers every message offers (NULL: acknowledge, or record a
    -- decision), and whether decisions are announced to the channels
    choices           text[] CHECK (cardinality(choices) BETWEEN 1 AND 10),
    announce_decisions boolean NOT NULL DEFAULT true,
    -- the last herald.alter_rule() (see herald.rule_change_log)
    altered_at        timestamptz,
    -- threshold rules: once the episode resolves, its follow-ups stop, or
    -- one more asks what was decided (ask_once)
    followup_on_resolve text NOT NULL DEFAULT 'stop' CHECK (followup_on_resolve IN ('stop', 'ask_once')),
    -- row rules: the columns a message shows as facts, in order (NULL: the
    -- table's first columns); herald._check_facts() has the range
    facts             text[] CHECK (cardinality(facts) BETWEEN 1 AND 8),
    -- a template per event type ({"rule.resolved": "..."}), before message
    messages          jsonb CHECK (jsonb_typeof(messages) = 'object'),
    CHECK (kind <> 'row' OR (on_table IS NOT NULL AND cardinality(operations) > 0)),
    CHECK (kind <> 'threshold' OR (metric IS NOT NULL AND grouped IS NOT NULL
                                   AND op IS NOT NULL AND threshold IS NOT NULL
                                   AND query_timeout IS NOT NULL
                                   AND (cardinality(watch) > 0 OR every IS NOT NULL)))
);
CREATE INDEX rule_defs_on_table ON herald.rule_defs (on_table);
COMMENT ON TABLE herald.rule_defs IS 'Rules declared with herald.on_change() and herald.on_threshold()';

CREATE TABLE herald.rule_channels (
    rule_id     integer NOT NULL REFERENCES herald.rule_defs ON DELETE CASCADE,
    channel_id  integer NOT NULL REFERENCES herald.channel_defs,
    PRIMARY KEY (rule_id, channel_id)
);
CREATE INDEX rule_channels_channel ON herald.rule_channels (channel_id);

-- Mutes a rule (or every rule, rule_id NULL) until a time: its events are
-- recorded, not delivered.
CREATE TABLE herald.silence_defs (
    id          serial PRIMARY KEY,
    rule_id     integer REFERENCES herald.rule_defs ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    until       timestamptz NOT NULL,
    reason      text NOT NULL CHECK (reason <> ''),
    created_by  name NOT NULL,
    ended_at    timestamptz,
    ended_by    name,
    CHECK (until > starts_at)
);
CREATE INDEX silence_defs_rule ON herald.silence_defs (rule_id);

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

-- The state machine of each threshold rule instance (one per group key;
-- key '' for a metric without a key column).  Written by the scheduler only.
CREATE TABLE herald.rule_instances (
    rule_id           integer NOT NULL REFERENCES herald.rule_defs ON DELETE CASCADE,
    key               text NOT NULL,
    state             text NOT NULL DEFAULT 'ok'
                      CHECK (state IN ('ok', 'pending', 'firing', 'error', 'no_data')),
    level             text CHECK (level IN ('warning', 'critical')),
    value             numeric,
    since             timestamptz NOT NULL,   -- in this state since
    pending_since     timestamptz,            -- the condition has held since
    firing_since      timestamptz,            -- the open episode began (NULL: none)
    fired_event_id    bigint,                 -- the event that opened it
    last_notified_at  timestamptz,            -- last fired, escalated or reminder event
    last_evaluated_at timestamptz,
    next_check_at     timestamptz,            -- a timer: pending period over, reminder due
    acknowledged_at   timestamptz,            -- the open episode was acknowledged
    error             text,
    PRIMARY KEY (rule_id, key)
);

-- Every evaluation of every instance: the metric's history.  Purged by
-- herald.retention.
CREATE TABLE herald.evaluation_log (
    id            bigserial PRIMARY KEY,
    rule_id       integer NOT NULL,
    key           text NOT NULL,
    evaluated_at  timestamptz NOT NULL,
    value         numeric,
    duration_ms   double precision,
    state_before  text,
    state_after   text NOT NULL,
    level         text,
    event_id      bigint,
    error         text
);
CREATE INDEX evaluation_log_rule ON herald.evaluation_log (rule_id, key, evaluated_at);
CREATE INDEX evaluation_log_at ON herald.evaluation_log (evaluated_at);
ALTER TABLE herald.evaluation_log SET (autovacuum_vacuum_scale_factor = 0.02,
                                      autovacuum_vacuum_cost_delay = 0);

-- Queue tables carry no foreign keys: they are written on the capture path
-- and by the workers, where a per-row check would cost more than the insert
-- itself.  pg_herald's own functions keep them consistent.
--
-- event_log is written by herald._append_event() (src/event_log.c) only,
-- straight into the heap: its ids come from a counter in shared memory, not
-- from a default (from the sequence event_log_id_seq only where pg_herald
-- is not preloaded).
CREATE TABLE herald.event_log (
    id          bigint PRIMARY KEY,
    type        text NOT NULL,
    rule_id     integer,
    rule        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    payload     jsonb NOT NULL,
    silenced_by integer,            -- the silence that muted it: no deliveries
    awaits_decision boolean,        -- its rule asks for a follow-up until decided
    about_event_id bigint,          -- decision.followup: the event it asks about
    asked_at    timestamptz,        -- when the last follow-up about it was sent
    channel_ids integer[] NOT NULL DEFAULT '{}'   -- where it goes: one delivery per channel
);
CREATE SEQUENCE herald.event_log_id_seq OWNED BY herald.event_log.id;
-- the follow-ups: events still awaiting a decision, and the questions asked
CREATE INDEX event_log_awaiting ON herald.event_log (created_at) WHERE awaits_decision;
CREATE INDEX event_log_about ON herald.event_log (about_event_id) WHERE about_event_id IS NOT NULL;


-- The deliveries that are not simply "read from event_log and delivered at
-- the first try": those that failed once (retry pending, or dead), that a
-- worker held back (no allowance of its channel when it read them) and
-- those redelivered.  Written by the delivery workers, herald.redeliver()
-- and herald.drop_channel().  id is the delivery's: herald._delivery_id().
CREATE TABLE herald.delivery_queue (
    id              bigint PRIMARY KEY,
    event_id        bigint NOT NULL,
    channel_id      integer NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    retry_base      integer NOT NULL DEFAULT 0,   -- attempts before the last redeliver
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_by       integer,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- the claim: each channel's due pending rows in time order
CREATE INDEX delivery_queue_due ON herald.delivery_queue (channel_id, next_attempt_at, id)
    WHERE status = 'pending';
-- the purge: finished rows by age; not touched by the insert
CREATE INDEX delivery_queue_finished ON herald.delivery_queue (status, finished_at)
    WHERE status <> 'pending';
CREATE INDEX delivery_queue_event ON herald.delivery_queue (event_id);

-- The installation: one row, written by CREATE EXTENSION.  Its id is the
-- middle part of every webhook-id (herald.webhook_id()), which receivers
-- dedupe on: an installation made again after DROP EXTENSION numbers its
-- events, hence its deliveries, from 1 again, so each draws a random id of
-- its own (60 bits, in decimal).  Not kept by pg_dump: a restored database
-- is another installation (it may run beside the original), whose
-- webhook-ids must not repeat the original's.
CREATE TABLE herald.installation (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9]+$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX installation_one_row ON herald.installation ((true));
COMMENT ON TABLE herald.installation IS 'This installation of pg_herald: the id its webhook-ids carry';
INSERT INTO herald.installation (id)
    SELECT ('x' || left(replace(pg_catalog.gen_random_uuid()::text, '-', ''), 15))::bit(60)::bigint::text;

-- One row per try of a delivery, appended by the delivery workers; a
-- delivery delivered at its first try has this row only.
CREATE TABLE herald.attempt_log (
    delivery_id  bigint NOT NULL,       -- herald._delivery_id()
    channel_id   integer NOT NULL,
    attempt      integer NOT NULL,
    started_at   timestamptz NOT NULL,
    latency_ms   double precision,
    http_status  integer,
    error        text,
    response     text
);
CREATE INDEX attempt_log_delivery ON herald.attempt_log (delivery_id);
CREATE INDEX attempt_log_channel ON herald.attempt_log (channel_id, started_at);

-- Each delivery worker's position in event_log: worker `slot` of `workers`
-- has handled (delivered, or queued in delivery_queue) every event with
-- id <= position and id % workers = slot.  Written by the workers only; a
-- worker without a row starts at the beginning.
CREATE TABLE herald.delivery_cursors (
    slot        integer PRIMARY KEY,
    workers     integer NOT NULL,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The queue tables churn: retries are inserted, leased, finished and
-- purged.  Vacuum them early so that dead rows do not pile up.
ALTER TABLE herald.delivery_queue SET (autovacuum_vacuum_scale_factor = 0.01,
                                      autovacuum_vacuum_insert_scale_factor = 0.01,
                                      autovacuum_vacuum_cost_delay = 0);
ALTER TABLE herald.attempt_log SET (autovacuum_vacuum_scale_factor = 0.02,
                                   autovacuum_vacuum_cost_delay = 0);
ALTER TABLE herald.event_log SET (autovacuum_vacuum_scale_factor = 0.02,
                                 autovacuum_vacuum_cost_delay = 0);

SELECT pg_catalog.pg_extension_config_dump('herald.channel_defs', '');
SELECT pg_catalog.pg_extension_config_dump('herald.channel_defs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.rule_defs', '');
SELECT pg_catalog.pg_extension_config_dump('herald.rule_defs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.rule_channels', '');
SELECT pg_catalog.pg_extension_config_dump('herald.silence_defs', '');
SELECT pg_catalog.pg_extension_config_dump('herald.silence_defs_id_seq', '');
-- the history, with its ids: an event id in a message names the same event
-- in a restored database
SELECT pg_catalog.pg_extension_config_dump('herald.rule_instances', '');
SELECT pg_catalog.pg_extension_config_dump('herald.evaluation_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.evaluation_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.event_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.delivery_queue', '');
SELECT pg_catalog.pg_extension_config_dump('herald.attempt_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.delivery_cursors', '');
SELECT pg_catalog.pg_extension_config_dump('herald.rule_change_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.rule_change_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('herald.dropped_rules', '');

-- What herald._run_metric() returns.
CREATE TYPE herald._metric_result AS (
    keys         text[],
    vals         numeric[],
    error        text,
    duration_ms  double precision
);

-------------------------------------------------------------------------------
-- Decisions: what people recorded about events
--
-- herald.acknowledge() and herald.decide() append to herald.decision_log
-- (several rows per event are fine: a decision may be revised, each one is
-- kept).  Acknowledging an event of a firing threshold instance stops the
-- episode's reminders.  herald.timeline tells the story of an event in one
-- place; herald.decision_report() sums up how decisions follow events.
-------------------------------------------------------------------------------

CREATE TABLE herald.decision_log (
    id           bigserial PRIMARY KEY,
    event_id     bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('acknowledgement', 'decision')),
    decision     text,
    action       text,
    note         text,
    decided_by   text NOT NULL,
    recorded_by  name NOT NULL,          -- the role that called the function
    decided_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'decision' OR decision IS NOT NULL),
    -- from the message: which of the rule's choices, how the person was
    -- identified (sql: the role; link: the recipient its signed link
    -- names; slack: the user Slack's signature vouches for), who the
    -- action falls to and by when, the channel it came from
    choice        text,
    identified_by text NOT NULL DEFAULT 'sql' CHECK (identified_by IN ('sql', 'link', 'slack')),
    actor_id      text,                 -- slack: the user's id; link: the recipient
    channel_id    integer,
    action_owner  text,
    action_due    date,
    request_key   text UNIQUE,          -- one decision per submitted form or Slack request
    response_url  text                  -- slack: where the message is updated
);
CREATE INDEX decision_log_event ON herald.decision_log (event_id);
COMMENT ON TABLE herald.decision_log IS 'Acknowledgements and decisions recorded about events';
SELECT pg_catalog.pg_extension_config_dump('herald.decision_log', '');
SELECT pg_catalog.pg_extension_config_dump('herald.decision_log_id_seq', '');

-- The keys of decision links (links.c): HMAC-SHA256 keys, the newest
-- unretired one signs, every one verifies the links it signed until they
-- expire.  Read by the workers only; not dumped (a restored database signs
-- with a new key, and links sent before the dump no longer open).
CREATE TABLE herald.link_keys (
    id          serial PRIMARY KEY,
    secret      bytea NOT NULL CHECK (length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
COMMENT ON TABLE herald.link_keys IS 'Keys that sign the links of messages; readable by the workers only';
INSERT INTO herald.link_keys (secret)
    SELECT pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');

-------------------------------------------------------------------------------
-- Dropped tables: the rules that use them are disabled (herald._tables_dropped)
-------------------------------------------------------------------------------

CREATE FUNCTION herald._on_sql_drop() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_on_sql_drop';
CREATE EVENT TRIGGER herald_sql_drop ON sql_drop
    EXECUTE FUNCTION herald._on_sql_drop();
