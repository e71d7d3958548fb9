/*
 * pg_herald install script.
 *
 * Catalog (who owns what):
 *   channels, rule_defs, rule_channels   configuration, kept by pg_dump
 *   event_log                            capture writes, workers read
 *   delivery_queue, attempt_log          the queue: capture inserts,
 *                                        delivery workers claim and record
 * Views give the stable names of the SQL contract: herald.rules,
 * herald.events, herald.deliveries, herald.attempts.
 *
 * Nothing is granted to PUBLIC.
 */
\echo Use "CREATE EXTENSION pg_herald" to load this file. \quit

-------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------

CREATE TABLE herald.channel_defs (
    id              serial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name <> ''),
    kind            text NOT NULL
                    CHECK (kind IN ('webhook', 'slack', 'teams', 'google_chat', 'email', 'notify')),
    target          text NOT NULL,
    secret          text,
    previous_secret text,             -- still signs until previous_secret_until
    previous_secret_until timestamptz,
    headers         jsonb,
    recipients      text[],           -- email
    sender          text,             -- email
    subject         text,             -- email: a template
    max_attempts    integer NOT NULL CHECK (max_attempts > 0),
    retry_delay     interval NOT NULL CHECK (retry_delay > '0'),
    timeout         interval NOT NULL CHECK (timeout > '0'),
    max_concurrency integer NOT NULL DEFAULT 32 CHECK (max_concurrency > 0),
    rate_limit      double precision CHECK (rate_limit > 0 AND rate_limit <= 1000000),   -- per second
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      name NOT NULL
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
    every             interval CHECK (every > '0'),
    pending_for       interval CHECK (pending_for >= '0'),
    repeat_every      interval CHECK (repeat_every > '0'),
    min_interval      interval NOT NULL DEFAULT '0' CHECK (min_interval >= '0'),
    no_data           text NOT NULL DEFAULT 'ok' CHECK (no_data IN ('ok', 'alert', 'keep')),
    query_timeout     interval CHECK (query_timeout > '0'),
    -- the decision loop, both kinds
    followup_after    interval CHECK (followup_after > '0'),
    followup_every    interval CHECK (followup_every > '0'),
    meeting           interval CHECK (meeting > '0'),   -- threshold rules
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

-- Queue tables carry no foreign keys: they are written on the capture path,
-- where a per-row check would cost more than the insert itself.  pg_herald's
-- own functions keep them consistent.
CREATE TABLE herald.event_log (
    id          bigserial PRIMARY KEY,
    type        text NOT NULL,
    rule_id     integer,
    rule        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    payload     jsonb NOT NULL,
    silenced_by integer,            -- the silence that muted it: no deliveries
    awaits_decision boolean,        -- its rule asks for a follow-up until decided
    about_event_id bigint,          -- decision.followup: the event it asks about
    asked_at    timestamptz         -- when the last follow-up about it was sent
);
-- the follow-ups: events still awaiting a decision, and the questions asked
CREATE INDEX event_log_awaiting ON herald.event_log (created_at) WHERE awaits_decision;
CREATE INDEX event_log_about ON herald.event_log (about_event_id) WHERE about_event_id IS NOT NULL;

-- the purge of silenced events, which have no deliveries
CREATE INDEX event_log_silenced ON herald.event_log (created_at) WHERE silenced_by IS NOT NULL;

CREATE TABLE herald.delivery_queue (
    id              bigserial PRIMARY KEY,
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

CREATE TABLE herald.attempt_log (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL,
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

-- The queue tables churn: every delivery is inserted, leased, finished and
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

-------------------------------------------------------------------------------
-- Internal functions (C)
-------------------------------------------------------------------------------

CREATE FUNCTION herald.capture() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_capture';
COMMENT ON FUNCTION herald.capture() IS 'Statement trigger installed by row rules on watched tables';

CREATE FUNCTION herald._rules_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_rules_changed';

CREATE FUNCTION herald._check_condition(on_table regclass, condition text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_condition';

CREATE FUNCTION herald._check_template(message text, kind text, on_table regclass) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_template';

CREATE FUNCTION herald._check_target(kind text, target text) RETURNS void
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_target';

CREATE FUNCTION herald._check_secret(secret text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_secret';

CREATE FUNCTION herald._note_work() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_note_work_sql';

-- Does row-level security apply to the invoker on this table?
CREATE FUNCTION herald._rls_applies(tbl regclass) RETURNS boolean
    STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_rls_applies';

-- The role that called pg_herald's API: current_user outside of the
-- SECURITY DEFINER functions it runs in.  Rules are owned by it, and its
-- privileges are the ones checked.
CREATE FUNCTION herald._invoker() RETURNS regrole
    STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_invoker';

-- What a role may see of rules and what they produced, and which rules it
-- may change: its own (and its roles') rules, or everything for
-- herald_admin.  Views ask for current_user, the API for the invoker.
CREATE FUNCTION herald._may_see(owner regrole, viewer regrole DEFAULT current_user::regrole)
RETURNS boolean
LANGUAGE sql STABLE
RETURN pg_catalog.pg_has_role(viewer, 'herald_admin', 'USAGE')
    OR (owner IS NOT NULL AND pg_catalog.pg_has_role(viewer, owner, 'USAGE'));

-- Channels, secrets and deliveries are herald_admin's.
CREATE FUNCTION herald._require_admin(what text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(herald._invoker(), 'herald_admin', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to %', what
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only members of herald_admin may.';
    END IF;
END;
$$;

CREATE TRIGGER rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON herald.rule_defs
    FOR EACH STATEMENT EXECUTE FUNCTION herald._rules_changed();
CREATE TRIGGER rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON herald.rule_channels
    FOR EACH STATEMENT EXECUTE FUNCTION herald._rules_changed();
CREATE TRIGGER rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON herald.silence_defs
    FOR EACH STATEMENT EXECUTE FUNCTION herald._rules_changed();

CREATE FUNCTION herald.touch() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_touch';
COMMENT ON FUNCTION herald.touch() IS 'Statement trigger installed on tables that threshold rules watch';

CREATE TYPE herald._metric_result AS (
    keys         text[],
    vals         numeric[],
    error        text,
    duration_ms  double precision
);

CREATE FUNCTION herald._run_metric(rule_id integer) RETURNS herald._metric_result
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_run_metric';

CREATE FUNCTION herald._check_metric(metric text, search_path text) RETURNS boolean
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_metric';

-------------------------------------------------------------------------------
-- Public functions
-------------------------------------------------------------------------------

CREATE FUNCTION herald.generate_secret() RETURNS text
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_generate_secret';
COMMENT ON FUNCTION herald.generate_secret() IS 'A new random Standard Webhooks secret (whsec_...)';

CREATE FUNCTION herald.webhook_signature(msg_id text, "timestamp" bigint, body text, secret text)
    RETURNS text
    IMMUTABLE STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_webhook_signature';
COMMENT ON FUNCTION herald.webhook_signature(text, bigint, text, text) IS
    'The webhook-signature header value pg_herald sends for a request';

CREATE FUNCTION herald.webhook_id(delivery_id bigint) RETURNS text
    STABLE STRICT LANGUAGE sql
    RETURN 'msg_' || 'herald'::regnamespace::oid || '_' || delivery_id;
COMMENT ON FUNCTION herald.webhook_id(bigint) IS
    'The webhook-id header of a delivery: stable across its retries, unique to this installation';

CREATE FUNCTION herald.flush(timeout interval DEFAULT '10 seconds') RETURNS boolean
    VOLATILE STRICT SECURITY DEFINER LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'herald_flush';
COMMENT ON FUNCTION herald.flush(interval) IS
    'Wait until the deliveries committed before the call are delivered or dead; true when that happened in time';

-- Channels --------------------------------------------------------------------

-- Check a channel's settings as a whole, for create_channel and
-- alter_channel alike.  Each error names the setting.
CREATE FUNCTION herald._check_channel(c herald.channel_defs) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_header record;
    v_address text;
    v_email constant text := '^[^][[:space:]<>()@",;:\\]+@[^][[:space:]<>()@",;:\\]+$';
BEGIN
    IF c.kind IS NULL OR c.kind NOT IN ('webhook', 'slack', 'teams', 'google_chat', 'email', 'notify') THEN
        RAISE EXCEPTION 'unknown channel kind "%"', c.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Supported kinds: webhook, slack, teams, google_chat, email, notify.';
    END IF;
    IF c.target IS NULL THEN
        RAISE EXCEPTION 'channel target must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF c.kind = 'notify' THEN
        IF c.target = '' OR octet_length(c.target) > 63 THEN
            RAISE EXCEPTION 'the target of a notify channel is a notification channel name of 1 to 63 bytes'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSE
        PERFORM herald._check_target(c.kind, c.target);
    END IF;

    IF c.kind = 'webhook' THEN
        PERFORM herald._check_secret(c.secret);
    ELSIF c.kind = 'email' THEN
        IF c.secret ~ '[\r\n]' THEN
            RAISE EXCEPTION 'the secret of an email channel is the SMTP password, on one line'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF c.secret IS NOT NULL THEN
        RAISE EXCEPTION 'channels of kind % take no secret', c.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN c.kind = 'notify' THEN NULL
                              ELSE 'The token of an incoming webhook is part of its URL, which is kept as a secret.' END;
    END IF;

    IF c.kind = 'email' THEN
        IF c.recipients IS NULL OR cardinality(c.recipients) = 0 THEN
            RAISE EXCEPTION 'an email channel needs recipients'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH v_address IN ARRAY c.recipients || c.sender LOOP
            IF v_address IS NULL OR v_address !~ v_email THEN
                RAISE EXCEPTION 'invalid email address "%"', coalesce(v_address, 'NULL')
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Give plain addresses such as ops@example.com; the sender is required.';
            END IF;
        END LOOP;
        PERFORM herald._check_template(c.subject, 'channel', NULL);
    ELSIF c.recipients IS NOT NULL OR c.sender IS NOT NULL OR c.subject IS NOT NULL THEN
        RAISE EXCEPTION 'recipients, sender and subject are settings of email channels'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF c.max_attempts IS NULL OR c.max_attempts <= 0 THEN
        RAISE EXCEPTION 'max_attempts must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF c.retry_delay IS NULL OR c.retry_delay <= '0' THEN
        RAISE EXCEPTION 'retry_delay must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF c.timeout IS NULL OR c.timeout <= '0' THEN
        RAISE EXCEPTION 'timeout must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF c.rate_limit IS NOT NULL
       AND NOT (c.rate_limit > 0 AND c.rate_limit <= 1000000) THEN
        RAISE EXCEPTION 'rate_limit must be between 0 and 1000000 messages per second'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'NULL means no limit.';
    END IF;
    IF c.max_concurrency IS NULL OR c.max_concurrency <= 0 THEN
        RAISE EXCEPTION 'max_concurrency must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF c.headers IS NOT NULL THEN
        IF c.kind IN ('email', 'notify') THEN
            RAISE EXCEPTION 'channels of kind % take no headers', c.kind
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(c.headers) <> 'object' THEN
            RAISE EXCEPTION 'headers must be a JSON object of header names and values'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR v_header IN SELECT * FROM jsonb_each(c.headers) LOOP
            IF v_header.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' THEN
                RAISE EXCEPTION 'invalid header name "%"', v_header.key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF lower(v_header.key) IN ('content-type', 'content-length', 'host', 'expect',
                                       'transfer-encoding', 'connection',
                                       'webhook-id', 'webhook-timestamp', 'webhook-signature') THEN
                RAISE EXCEPTION 'header "%" is set by pg_herald', v_header.key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(v_header.value) <> 'string'
               OR v_header.value #>> '{}' ~ '[\r\n]' THEN
                RAISE EXCEPTION 'value of header "%" must be a single-line string', v_header.key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;
END;
$$;

CREATE FUNCTION herald.create_channel(
    name         text,
    kind         text,
    target       text,
    secret       text DEFAULT NULL,
    max_attempts integer DEFAULT 8,
    retry_delay  interval DEFAULT '5 seconds',
    timeout      interval DEFAULT '15 seconds',
    headers      jsonb DEFAULT NULL,
    rate_limit   double precision DEFAULT NULL,
    max_concurrency integer DEFAULT 32,
    recipients   text[] DEFAULT NULL,
    sender       text DEFAULT NULL,
    subject      text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c herald.channel_defs;
BEGIN
    PERFORM herald._require_admin('create a channel');
    IF create_channel.name IS NULL OR create_channel.name = '' THEN
        RAISE EXCEPTION 'channel name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM herald.channel_defs x WHERE x.name = create_channel.name) THEN
        RAISE EXCEPTION 'channel "%" already exists', create_channel.name
            USING ERRCODE = 'duplicate_object';
    END IF;
    c.name := create_channel.name;
    c.kind := create_channel.kind;
    c.target := create_channel.target;
    -- webhooks are always signed; Slack and Google Chat take one message a second
    c.secret := CASE WHEN create_channel.kind = 'webhook'
                     THEN coalesce(create_channel.secret, herald.generate_secret())
                     ELSE create_channel.secret END;
    c.rate_limit := coalesce(create_channel.rate_limit,
                             CASE WHEN create_channel.kind IN ('slack', 'google_chat') THEN 1 END);
    c.max_attempts := create_channel.max_attempts;
    c.retry_delay := create_channel.retry_delay;
    c.timeout := create_channel.timeout;
    c.headers := create_channel.headers;
    c.max_concurrency := create_channel.max_concurrency;
    c.recipients := create_channel.recipients;
    c.sender := create_channel.sender;
    c.subject := create_channel.subject;
    PERFORM herald._check_channel(c);

    INSERT INTO herald.channel_defs (name, kind, target, secret, headers, recipients, sender, subject,
                                 max_attempts, retry_delay, timeout, rate_limit, max_concurrency,
                                 created_by)
    VALUES (c.name, c.kind, c.target, c.secret, c.headers, c.recipients, c.sender, c.subject,
            c.max_attempts, c.retry_delay, c.timeout, c.rate_limit, c.max_concurrency,
            herald._invoker());
END;
$$;
COMMENT ON FUNCTION herald.create_channel(text, text, text, text, integer, interval, interval, jsonb, double precision, integer, text[], text, text) IS
    'Create a channel: a destination and its delivery policy';

-- NULL leaves a setting as it is.  A new secret of a webhook channel starts
-- a rotation: the previous one keeps signing (a second signature) for
-- rotation, so that receivers can switch at their pace.
CREATE FUNCTION herald.alter_channel(
    name         text,
    target       text DEFAULT NULL,
    secret       text DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    retry_delay  interval DEFAULT NULL,
    timeout      interval DEFAULT NULL,
    headers      jsonb DEFAULT NULL,
    rate_limit   double precision DEFAULT NULL,
    max_concurrency integer DEFAULT NULL,
    recipients   text[] DEFAULT NULL,
    sender       text DEFAULT NULL,
    subject      text DEFAULT NULL,
    enabled      boolean DEFAULT NULL,
    rotation     interval DEFAULT '1 day')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c herald.channel_defs;
    v_old herald.channel_defs;
BEGIN
    PERFORM herald._require_admin('alter a channel');
    SELECT * INTO v_old FROM herald.channel_defs x WHERE x.name = alter_channel.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel "%" does not exist', alter_channel.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF alter_channel.rotation IS NULL OR alter_channel.rotation < '0' THEN
        RAISE EXCEPTION 'rotation must not be null or negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    c := v_old;
    c.target := coalesce(alter_channel.target, c.target);
    c.secret := coalesce(alter_channel.secret, c.secret);
    c.max_attempts := coalesce(alter_channel.max_attempts, c.max_attempts);
    c.retry_delay := coalesce(alter_channel.retry_delay, c.retry_delay);
    c.timeout := coalesce(alter_channel.timeout, c.timeout);
    c.headers := coalesce(alter_channel.headers, c.headers);
    c.rate_limit := coalesce(alter_channel.rate_limit, c.rate_limit);
    c.max_concurrency := coalesce(alter_channel.max_concurrency, c.max_concurrency);
    c.recipients := coalesce(alter_channel.recipients, c.recipients);
    c.sender := coalesce(alter_channel.sender, c.sender);
    c.subject := coalesce(alter_channel.subject, c.subject);
    PERFORM herald._check_channel(c);

    IF c.kind = 'webhook' AND c.secret IS DISTINCT FROM v_old.secret THEN
        c.previous_secret := v_old.secret;
        c.previous_secret_until := now() + alter_channel.rotation;
    END IF;
    IF alter_channel.enabled IS NOT NULL THEN
        c.enabled := alter_channel.enabled;
        c.disabled_reason := CASE WHEN alter_channel.enabled THEN NULL ELSE 'disabled by ' || herald._invoker() END;
    END IF;
    UPDATE herald.channel_defs x
       SET target = c.target, secret = c.secret, previous_secret = c.previous_secret,
           previous_secret_until = c.previous_secret_until, max_attempts = c.max_attempts,
           retry_delay = c.retry_delay, timeout = c.timeout, headers = c.headers,
           rate_limit = c.rate_limit, max_concurrency = c.max_concurrency,
           recipients = c.recipients, sender = c.sender, subject = c.subject,
           enabled = c.enabled, disabled_reason = c.disabled_reason
     WHERE x.id = c.id;
END;
$$;
COMMENT ON FUNCTION herald.alter_channel(text, text, text, integer, interval, interval, jsonb, double precision, integer, text[], text, text, boolean, interval) IS
    'Change a channel''s settings; a new webhook secret starts a rotation during which both sign';

CREATE FUNCTION herald.test_channel(name text) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c herald.channel_defs;
    v_event bigint;
    v_delivery bigint;
BEGIN
    PERFORM herald._require_admin('test a channel');
    SELECT * INTO c FROM herald.channel_defs x WHERE x.name = test_channel.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel "%" does not exist', test_channel.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT c.enabled THEN
        RAISE EXCEPTION 'channel "%" is disabled', test_channel.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Enable it with herald.alter_channel(name, enabled => true).';
    END IF;
    INSERT INTO herald.event_log (type, payload)
    VALUES ('channel.test', jsonb_build_object('channel', c.name, 'requested_by', herald._invoker()::text))
    RETURNING id INTO v_event;
    INSERT INTO herald.delivery_queue (event_id, channel_id)
    VALUES (v_event, c.id)
    RETURNING id INTO v_delivery;
    PERFORM herald._note_work();
    RETURN v_delivery;
END;
$$;
COMMENT ON FUNCTION herald.test_channel(text) IS
    'Send a channel.test event through the whole delivery path; returns its delivery id';

CREATE FUNCTION herald.drop_channel(name text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id integer;
    v_rules text;
    v_pending bigint;
BEGIN
    PERFORM herald._require_admin('drop a channel');
    SELECT c.id INTO v_id FROM herald.channel_defs c WHERE c.name = drop_channel.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel "%" does not exist', drop_channel.name
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT string_agg(format('%I', r.name), ', ' ORDER BY r.name) INTO v_rules
      FROM herald.rule_channels rc JOIN herald.rule_defs r ON r.id = rc.rule_id
     WHERE rc.channel_id = v_id;
    IF v_rules IS NOT NULL THEN
        RAISE EXCEPTION 'cannot drop channel "%" because rules use it', drop_channel.name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Rules using it: %s.', v_rules),
                  HINT = 'Drop those rules first.';
    END IF;
    SELECT count(*) INTO v_pending FROM herald.delivery_queue d
     WHERE d.channel_id = v_id AND d.status = 'pending';
    DELETE FROM herald.attempt_log a WHERE a.channel_id = v_id;
    -- the channel's deliveries, and the events no other channel needs
    WITH gone AS (
        DELETE FROM herald.delivery_queue d WHERE d.channel_id = v_id
        RETURNING d.event_id)
    DELETE FROM herald.event_log e
     WHERE e.id IN (SELECT event_id FROM gone)
       AND NOT EXISTS (SELECT 1 FROM herald.delivery_queue o
                        WHERE o.event_id = e.id AND o.channel_id <> v_id);
    DELETE FROM herald.channel_defs c WHERE c.id = v_id;
    IF v_pending > 0 THEN
        RAISE NOTICE '% pending deliveries to channel "%" were discarded', v_pending, drop_channel.name;
    END IF;
END;
$$;
COMMENT ON FUNCTION herald.drop_channel(text) IS 'Drop a channel that no rule uses, with its deliveries and the events only it carried';

-- Rules -----------------------------------------------------------------------

-- Create or drop the triggers of a table so that they match its enabled
-- rules: for row rules, one capture trigger per operation; for threshold
-- rules that watch it, one herald_watch trigger.
CREATE FUNCTION herald._sync_triggers(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text;
    v_name text;
    v_wanted boolean;
    v_exists boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM herald.rule_defs r
                    WHERE r.kind = 'threshold' AND r.enabled AND tbl = ANY (r.watch))
      INTO v_wanted;
    SELECT EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = tbl AND t.tgname = 'herald_watch')
      INTO v_exists;
    IF v_wanted AND NOT v_exists THEN
        -- disabled: it marks the table, pg_herald's executor hook does the
        -- noting (see evaluate.c); enabled, it would note the table too
        EXECUTE format('CREATE TRIGGER herald_watch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE'
                       ' ON %s FOR EACH STATEMENT EXECUTE FUNCTION herald.touch()', tbl);
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER herald_watch', tbl);
    ELSIF v_exists AND NOT v_wanted THEN
        EXECUTE format('DROP TRIGGER herald_watch ON %s', tbl);
    END IF;

    FOREACH v_op IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
        v_name := 'herald_capture_' || lower(v_op);
        SELECT EXISTS (SELECT 1 FROM herald.rule_defs r
                        WHERE r.on_table = tbl AND r.kind = 'row' AND r.enabled
                          AND v_op = ANY (r.operations))
          INTO v_wanted;
        SELECT EXISTS (SELECT 1 FROM pg_trigger t
                        WHERE t.tgrelid = tbl AND t.tgname = v_name)
          INTO v_exists;
        IF v_wanted AND NOT v_exists THEN
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s'
                           ' FOR EACH STATEMENT EXECUTE FUNCTION herald.capture()',
                           v_name, v_op, tbl,
                           CASE v_op
                               WHEN 'INSERT' THEN 'NEW TABLE AS herald_new'
                               WHEN 'UPDATE' THEN 'OLD TABLE AS herald_old NEW TABLE AS herald_new'
                               ELSE 'OLD TABLE AS herald_old'
                           END);
        ELSIF v_exists AND NOT v_wanted THEN
            EXECUTE format('DROP TRIGGER %I ON %s', v_name, tbl);
        END IF;
    END LOOP;
END;
$$;

-- Checks shared by the declarations ------------------------------------------

-- A new rule's name: not empty, not taken.
CREATE FUNCTION herald._check_rule_name(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF _check_rule_name.name IS NULL OR _check_rule_name.name = '' THEN
        RAISE EXCEPTION 'rule name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(_check_rule_name.name) > 200 OR _check_rule_name.name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'a rule name has at most 200 characters and no control characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- two sessions declaring the same name: the second waits for the first,
    -- then sees its rule
    PERFORM pg_advisory_xact_lock(hashtext('herald.rule_defs.name'), hashtext(_check_rule_name.name));
    IF EXISTS (SELECT 1 FROM herald.rule_defs r WHERE r.name = _check_rule_name.name) THEN
        RAISE EXCEPTION 'rule "%" already exists', _check_rule_name.name
            USING ERRCODE = 'duplicate_object';
    END IF;
END;
$$;

-- The ids of the named channels, each once; an error names a missing one.
CREATE FUNCTION herald._channel_ids(channels text[]) RETURNS integer[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_channel text;
    v_id integer;
    v_ids integer[] := '{}';
BEGIN
    IF channels IS NULL OR cardinality(channels) = 0 THEN
        RAISE EXCEPTION 'a rule needs at least one channel'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH v_channel IN ARRAY channels LOOP
        SELECT c.id INTO v_id FROM herald.channel_defs c WHERE c.name = v_channel;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'channel "%" does not exist', v_channel
                USING ERRCODE = 'undefined_object';
        END IF;
        IF NOT v_id = ANY (v_ids) THEN
            v_ids := v_ids || v_id;
        END IF;
    END LOOP;
    RETURN v_ids;
END;
$$;

-- Follow-ups: after a delay, and again every so often if asked to.
CREATE FUNCTION herald._check_followups(followup_after interval, followup_every interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF followup_after IS NOT NULL AND followup_after < '1 second' THEN
        RAISE EXCEPTION 'followup_after must be at least 1 second'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF followup_every IS NOT NULL AND followup_after IS NULL THEN
        RAISE EXCEPTION 'followup_every needs followup_after'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'followup_after says when the first follow-up goes out.';
    END IF;
    IF followup_every IS NOT NULL AND followup_every < '1 second' THEN
        RAISE EXCEPTION 'followup_every must be at least 1 second'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- A table a rule may watch: an ordinary or partitioned table outside the
-- system and pg_herald's schemas, that the declaring role can read.
CREATE FUNCTION herald._check_watchable(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel record;
BEGIN
    SELECT c.relkind, n.nspname INTO v_rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF v_rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot watch "%": only tables can be watched', tbl
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF v_rel.nspname IN ('herald', 'pg_catalog', 'information_schema')
       OR v_rel.nspname LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'cannot watch "%": it belongs to schema "%"', tbl, v_rel.nspname
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NOT has_table_privilege(herald._invoker(), tbl, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied to watch table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A rule can only watch tables its owner may read.';
    END IF;
END;
$$;

-- Row rules pass whole rows to their channels: a table whose row-level
-- security applies to the rule's owner cannot be captured faithfully.
CREATE FUNCTION herald._check_capturable(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF herald._rls_applies(tbl) THEN
        RAISE EXCEPTION 'cannot capture rows of table % for role %: row-level security applies to it',
                        tbl, herald._invoker()
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Row events carry whole rows, whatever the policies let the rule''s owner see.',
                  HINT = 'Declare the rule as a role the policies do not apply to, or use a threshold rule: metrics run under row-level security.';
    END IF;
END;
$$;

CREATE FUNCTION herald.on_change(
    name       text,
    on_table   regclass,
    channels   text[],
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE}',
    condition  text DEFAULT NULL,
    message    text DEFAULT NULL,
    followup_after interval DEFAULT NULL,
    followup_every interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ops text[];
    v_op text;
    v_channel_ids integer[];
    v_id integer;
BEGIN
    PERFORM herald._check_rule_name(on_change.name);
    IF on_change.on_table IS NULL THEN
        RAISE EXCEPTION 'on_table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM herald._check_watchable(on_change.on_table);
    PERFORM herald._check_capturable(on_change.on_table);
    v_channel_ids := herald._channel_ids(on_change.channels);

    IF on_change.operations IS NULL OR cardinality(on_change.operations) = 0 THEN
        RAISE EXCEPTION 'a rule needs at least one operation'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Operations are INSERT, UPDATE and DELETE.';
    END IF;
    v_ops := '{}';
    FOREACH v_op IN ARRAY on_change.operations LOOP
        IF v_op IS NULL OR upper(v_op) NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN
            RAISE EXCEPTION 'unknown operation "%"', v_op
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Operations are INSERT, UPDATE and DELETE.';
        END IF;
        IF NOT upper(v_op) = ANY (v_ops) THEN
            v_ops := v_ops || upper(v_op);
        END IF;
    END LOOP;

    PERFORM herald._check_condition(on_change.on_table, on_change.condition);
    PERFORM herald._check_template(on_change.message, 'row', on_change.on_table);
    PERFORM herald._check_followups(on_change.followup_after, on_change.followup_every);

    INSERT INTO herald.rule_defs (name, kind, owner, on_table, operations, condition, message,
                                  followup_after, followup_every)
    VALUES (on_change.name, 'row', herald._invoker(), on_change.on_table, v_ops,
            on_change.condition, on_change.message, on_change.followup_after,
            on_change.followup_every)
    RETURNING id INTO v_id;
    INSERT INTO herald.rule_channels (rule_id, channel_id)
    SELECT v_id, unnest(v_channel_ids);

    PERFORM herald._sync_triggers(on_change.on_table);
END;
$$;
COMMENT ON FUNCTION herald.on_change(text, regclass, text[], text[], text, text, interval, interval) IS
    'Declare a row rule: matching committed row changes become events on the given channels';

-- A rule the invoker may change: its own (or its role's), or any for
-- herald_admin.
CREATE FUNCTION herald._own_rule(name text, what text) RETURNS herald.rule_defs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs := herald._rule(_own_rule.name);
BEGIN
    IF NOT herald._may_see(v_rule.owner, herald._invoker()) THEN
        RAISE EXCEPTION 'permission denied to % rule "%"', what, _own_rule.name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The rule belongs to %s.', v_rule.owner);
    END IF;
    RETURN v_rule;
END;
$$;

-- Sync the triggers of every table a rule uses.
CREATE FUNCTION herald._sync_rule_triggers(r herald.rule_defs) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT herald._sync_triggers(t)
      FROM (SELECT DISTINCT t FROM unnest(r.on_table || coalesce(r.watch, '{}')) AS t
             WHERE t IS NOT NULL) AS tables;
END;

-- Look a rule up by name, with a clear error when it does not exist.
CREATE FUNCTION herald._rule(name text) RETURNS herald.rule_defs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs;
BEGIN
    SELECT * INTO v_rule FROM herald.rule_defs r WHERE r.name = _rule.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule "%" does not exist', _rule.name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN v_rule;
END;
$$;

CREATE FUNCTION herald.drop_rule(name text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs := herald._own_rule(drop_rule.name, 'drop');
BEGIN
    DELETE FROM herald.rule_defs r WHERE r.id = v_rule.id;
    DELETE FROM herald.evaluation_log l WHERE l.rule_id = v_rule.id;
    PERFORM herald._sync_rule_triggers(v_rule);
END;
$$;
COMMENT ON FUNCTION herald.drop_rule(text) IS 'Drop a rule; its events and deliveries stay';

CREATE FUNCTION herald._set_rule_enabled(name text, enabled boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs := herald._own_rule(_set_rule_enabled.name,
                                                CASE WHEN enabled THEN 'enable' ELSE 'disable' END);
BEGIN
    UPDATE herald.rule_defs r SET enabled = _set_rule_enabled.enabled WHERE r.id = v_rule.id;
    PERFORM herald._sync_rule_triggers(v_rule);
END;
$$;

CREATE FUNCTION herald.enable_rule(name text) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC
        SELECT herald._set_rule_enabled(name, true);
    END;
COMMENT ON FUNCTION herald.enable_rule(text) IS 'Enable a rule';

CREATE FUNCTION herald.disable_rule(name text) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC
        SELECT herald._set_rule_enabled(name, false);
    END;
COMMENT ON FUNCTION herald.disable_rule(text) IS 'Disable a rule: it captures nothing until enabled again';

-- Deliveries ------------------------------------------------------------------

CREATE FUNCTION herald.redeliver(delivery_id bigint) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status text;
    v_channel record;
BEGIN
    PERFORM herald._require_admin('redeliver');
    SELECT d.status INTO v_status FROM herald.delivery_queue d
     WHERE d.id = redeliver.delivery_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', redeliver.delivery_id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF v_status = 'delivered' THEN
        RAISE EXCEPTION 'delivery % was already delivered', redeliver.delivery_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT c.name, c.enabled INTO v_channel
      FROM herald.channel_defs c JOIN herald.delivery_queue d ON d.channel_id = c.id
     WHERE d.id = redeliver.delivery_id;
    IF NOT v_channel.enabled THEN
        RAISE EXCEPTION 'channel "%" is disabled', v_channel.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Enable the channel before redelivering to it.';
    END IF;
    UPDATE herald.delivery_queue d
       SET status = 'pending', retry_base = d.attempts, next_attempt_at = now(),
           leased_by = NULL, finished_at = NULL
     WHERE d.id = redeliver.delivery_id;
    PERFORM herald._note_work();
END;
$$;
COMMENT ON FUNCTION herald.redeliver(bigint) IS 'Put a dead or failing delivery back in the queue, due now';

-------------------------------------------------------------------------------
-- Views
-------------------------------------------------------------------------------

-- The views below filter with herald._may_see() and are security
-- barriers, so that no function of the caller's sees a row before the
-- filter.
-- One row per row rule, one per threshold rule instance (one per threshold
-- rule not evaluated yet, with a NULL state).
CREATE VIEW herald.rules WITH (security_barrier) AS
SELECT r.name,
       r.kind,
       i.key,
       CASE WHEN NOT r.enabled THEN 'disabled'
            WHEN r.kind = 'row' THEN 'active'
            ELSE i.state END AS state,
       i.value,
       i.level,
       i.since,
       i.last_evaluated_at,
       i.acknowledged_at,
       i.error,
       s.until AS silenced_until,
       r.enabled,
       r.on_table,
       r.operations,
       r.condition,
       r.metric,
       r.op,
       r.threshold,
       r.warning_threshold,
       r.recover_threshold,
       r.watch,
       r.every,
       r.pending_for,
       r.repeat_every,
       r.min_interval,
       r.no_data,
       r.query_timeout,
       r.message,
       ARRAY(SELECT c.name FROM herald.rule_channels rc
               JOIN herald.channel_defs c ON c.id = rc.channel_id
              WHERE rc.rule_id = r.id ORDER BY c.name) AS channels,
       r.owner,
       r.created_at
  FROM herald.rule_defs r
  LEFT JOIN herald.rule_instances i ON i.rule_id = r.id
  LEFT JOIN LATERAL (
        SELECT max(x.until) AS until FROM herald.silence_defs x
         WHERE (x.rule_id = r.id OR x.rule_id IS NULL) AND x.ended_at IS NULL
           AND now() >= x.starts_at AND now() < x.until) s ON true
 WHERE herald._may_see(r.owner);

-- A URL without what may be a credential: the password of its user
-- information, its path and its query (Slack and Teams put their tokens in
-- the path, Google Chat in the query).
CREATE FUNCTION herald._mask_url(url text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN url !~ '^[A-Za-z][A-Za-z0-9+.-]*://' THEN '***' ELSE
       regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://)(([^/?#@:]*)(:[^/?#@]*)?@)?([^/?#]*)(.*)$',
                      '\1' || CASE WHEN url ~ '^[^/]*//[^/?#@]*:[^/?#@]*@' THEN '\3:***@'
                                    WHEN url ~ '^[^/]*//[^/?#@]*@' THEN '\3@' ELSE '' END
                           || '\5' || CASE WHEN url ~ '^[^/]*//[^/?#]*[/?#].' THEN '/***' ELSE '' END) END;

-- Channels as everyone but herald_admin sees them: no secret, no token.
CREATE VIEW herald.channels AS
SELECT c.id,
       c.name,
       c.kind,
       herald._mask_url(c.target) AS target,
       CASE WHEN c.secret IS NOT NULL THEN '***' END AS secret,
       (SELECT jsonb_object_agg(h.key, '***') FROM jsonb_each(c.headers) h) AS headers,
       c.recipients,
       c.sender,
       c.subject,
       c.max_attempts,
       c.retry_delay,
       c.timeout,
       c.max_concurrency,
       c.rate_limit,
       c.enabled,
       c.disabled_reason,
       c.previous_secret_until > now() AS rotating,
       c.created_at,
       c.created_by
  FROM herald.channel_defs c;

CREATE VIEW herald.events WITH (security_barrier) AS
SELECT e.id, e.type, e.rule, e.created_at, e.payload, e.silenced_by IS NOT NULL AS silenced
  FROM herald.event_log e
  LEFT JOIN herald.rule_defs r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

CREATE VIEW herald.evaluations WITH (security_barrier) AS
SELECT l.id,
       r.name AS rule,
       l.key,
       l.evaluated_at,
       l.value,
       l.duration_ms,
       l.state_before,
       l.state_after,
       l.level,
       l.event_id,
       l.error
  FROM herald.evaluation_log l
  JOIN herald.rule_defs r ON r.id = l.rule_id
 WHERE herald._may_see(r.owner);

CREATE VIEW herald.silences WITH (security_barrier) AS
SELECT x.id,
       r.name AS rule,
       x.starts_at,
       x.until,
       x.reason,
       x.created_by,
       x.ended_at,
       x.ended_by,
       x.ended_at IS NULL AND now() >= x.starts_at AND now() < x.until AS active
  FROM herald.silence_defs x
  LEFT JOIN herald.rule_defs r ON r.id = x.rule_id
 WHERE x.rule_id IS NULL OR herald._may_see(r.owner);

CREATE VIEW herald.deliveries WITH (security_barrier) AS
SELECT d.id,
       d.event_id,
       c.name AS channel,
       d.status,
       d.attempts,
       d.last_status,
       d.last_error,
       d.status = 'pending' AND d.leased_by IS NOT NULL AS in_flight,
       CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
       herald.webhook_id(d.id) AS webhook_id,
       d.created_at,
       d.finished_at
  FROM herald.delivery_queue d
  JOIN herald.channel_defs c ON c.id = d.channel_id
  JOIN herald.event_log e ON e.id = d.event_id
  LEFT JOIN herald.rule_defs r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

CREATE VIEW herald.attempts WITH (security_barrier) AS
SELECT a.delivery_id,
       a.attempt,
       a.started_at,
       a.latency_ms,
       a.http_status,
       a.error,
       a.response
  FROM herald.attempt_log a
  JOIN herald.delivery_queue d ON d.id = a.delivery_id
  JOIN herald.event_log e ON e.id = d.event_id
  LEFT JOIN herald.rule_defs r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

-- One row per channel: the queue now, and the attempts of the last hour.
CREATE VIEW herald.channel_health AS
SELECT c.name AS channel,
       c.kind,
       c.enabled,
       q.pending,
       q.in_flight,
       q.delivered,
       q.dead,
       a.attempts AS attempts_1h,
       a.success_rate AS success_rate_1h,
       a.latency_p50_ms,
       a.latency_p99_ms,
       q.oldest_pending_age
  FROM herald.channel_defs c
  CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE d.status = 'pending') AS pending,
               count(*) FILTER (WHERE d.status = 'pending' AND d.leased_by IS NOT NULL) AS in_flight,
               count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE d.status = 'dead') AS dead,
               now() - min(d.created_at) FILTER (WHERE d.status = 'pending') AS oldest_pending_age
          FROM herald.delivery_queue d
         WHERE d.channel_id = c.id) q
  CROSS JOIN LATERAL (
        SELECT count(*) AS attempts,
               round(avg((t.http_status BETWEEN 200 AND 299)::int), 4) AS success_rate,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY t.latency_ms)::numeric, 3) AS latency_p50_ms,
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY t.latency_ms)::numeric, 3) AS latency_p99_ms
          FROM herald.attempt_log t
         WHERE t.channel_id = c.id AND t.started_at > now() - interval '1 hour') a;
-------------------------------------------------------------------------------
-- Threshold rules
--
-- herald.on_threshold() declares a metric (a query returning one number, or
-- a key and a number per row) compared with thresholds.  The scheduler
-- worker evaluates it after commits that touch a watched table and every
-- `every`, calling herald._evaluate(): the metric runs as the rule's owner
-- (herald._run_metric, in C), herald._plan_evaluation() pairs its rows with
-- the rule's instances and herald._transition() moves each instance's state
-- machine.  Transitions become events through herald._emit(), which honours
-- silences.  herald.preview() runs the same plan and stores nothing.
-------------------------------------------------------------------------------

-- The silence muting a rule now, if any (the one lasting longest).
CREATE FUNCTION herald._active_silence(rule_id integer) RETURNS herald.silence_defs
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT x.* FROM herald.silence_defs x
     WHERE (x.rule_id = _active_silence.rule_id OR x.rule_id IS NULL)
       AND x.ended_at IS NULL AND now() >= x.starts_at AND now() < x.until
     ORDER BY x.until DESC, x.id
     LIMIT 1;
END;

-- Record an event of a rule and queue it to the rule's channels, unless a
-- silence mutes the rule: then it is recorded only.
CREATE FUNCTION herald._emit(rule_id integer, type text, payload jsonb,
                             about_event_id bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_silence integer := (herald._active_silence(_emit.rule_id)).id;
    v_id bigint;
BEGIN
    INSERT INTO herald.event_log (type, rule_id, rule, payload, silenced_by,
                                  awaits_decision, about_event_id)
    SELECT _emit.type, r.id, r.name, _emit.payload, v_silence,
           r.followup_after IS NOT NULL AND _emit.type IN ('rule.fired', 'rule.escalated')
               AND v_silence IS NULL,
           _emit.about_event_id
      FROM herald.rule_defs r WHERE r.id = _emit.rule_id
    RETURNING id INTO v_id;
    IF v_silence IS NULL THEN
        INSERT INTO herald.delivery_queue (event_id, channel_id)
        SELECT v_id, rc.channel_id FROM herald.rule_channels rc
         WHERE rc.rule_id = _emit.rule_id;
        IF FOUND THEN
            PERFORM herald._note_work();
        END IF;
    END IF;
    RETURN v_id;
END;
$$;

CREATE FUNCTION herald._compare(v numeric, op text, t numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN CASE op WHEN '>' THEN v > t WHEN '>=' THEN v >= t
               WHEN '<' THEN v < t WHEN '<=' THEN v <= t
               WHEN '=' THEN v = t WHEN '<>' THEN v <> t END;

-- One step of an instance's state machine: instance i observes value v
-- (NULL: no data) at time at.  Returns the instance as it becomes and the
-- event the step causes, if any.
--
--   ok -> pending (condition holds, pending_for not over) -> firing
--   firing -> ok once recovered: for > and >=, at or below
--   recover_threshold (for < and <=, at or above it); without one, as soon
--   as no threshold is crossed.  Between the two the instance keeps firing.
--   A firing episode never de-escalates: warning -> critical is reported
--   once (rule.escalated), and the episode ends with rule.resolved.
--   Reminders stop once the episode is acknowledged (herald.acknowledge).
CREATE FUNCTION herald._transition(r herald.rule_defs, i herald.rule_instances,
                                   v numeric, at timestamptz,
                                   OUT n herald.rule_instances, OUT event text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_open boolean := i.firing_since IS NOT NULL;
    v_level text;
BEGIN
    n := i;
    n.value := v;
    n.error := NULL;
    n.last_evaluated_at := at;

    IF v IS NULL THEN
        IF r.no_data = 'keep' THEN
            IF i.state = 'error' THEN
                n.state := CASE WHEN v_open THEN 'firing' ELSE 'ok' END;
            END IF;
        ELSIF r.no_data = 'alert' THEN
            n.state := 'no_data';
            IF NOT v_open THEN
                n.level := 'critical';
                n.firing_since := at;
                event := 'rule.fired';
            END IF;
        ELSE
            n.state := 'ok';
        END IF;
    ELSE
        v_level := CASE WHEN herald._compare(v, r.op, r.threshold) THEN 'critical'
                        WHEN herald._compare(v, r.op, r.warning_threshold) THEN 'warning' END;
        IF v_open THEN
            IF v_level IS NOT NULL THEN
                n.state := 'firing';
                IF v_level = 'critical' AND i.level = 'warning' THEN
                    n.level := 'critical';
                    event := 'rule.escalated';
                END IF;
            ELSIF r.recover_threshold IS NULL
                  OR (r.op IN ('>', '>=') AND v <= r.recover_threshold)
                  OR (r.op IN ('<', '<=') AND v >= r.recover_threshold) THEN
                n.state := 'ok';
            ELSE
                n.state := 'firing';
            END IF;
        ELSIF v_level IS NULL THEN
            n.state := 'ok';
        ELSIF coalesce(r.pending_for, '0') = '0'
              OR (i.state = 'pending' AND at >= i.pending_since + r.pending_for) THEN
            n.state := 'firing';
            n.level := v_level;
            n.firing_since := at;
            event := 'rule.fired';
        ELSE
            n.state := 'pending';
            n.level := v_level;
            n.pending_since := CASE WHEN i.state = 'pending' THEN i.pending_since ELSE at END;
        END IF;
    END IF;

    IF n.state = 'ok' THEN
        IF v_open THEN
            event := 'rule.resolved';
        END IF;
        n.level := NULL;
        n.firing_since := NULL;
        n.fired_event_id := NULL;
        n.last_notified_at := NULL;
        n.acknowledged_at := NULL;
    END IF;
    IF n.state <> 'pending' THEN
        n.pending_since := NULL;
    END IF;
    IF event IN ('rule.fired', 'rule.escalated') THEN
        n.last_notified_at := at;
    ELSIF event IS NULL AND n.firing_since IS NOT NULL AND r.repeat_every IS NOT NULL
          AND n.acknowledged_at IS NULL
          AND at >= n.last_notified_at + r.repeat_every THEN
        event := 'rule.reminder';
        n.last_notified_at := at;
    END IF;

    n.since := CASE WHEN n.state IS DISTINCT FROM i.state THEN at ELSE i.since END;
    n.next_check_at := CASE
        WHEN n.state = 'pending' THEN n.pending_since + r.pending_for
        WHEN n.firing_since IS NOT NULL AND n.acknowledged_at IS NULL
        THEN n.last_notified_at + r.repeat_every
    END;
    -- a timer already past (a pending instance kept without data) would
    -- call for evaluations without end: the next commit or schedule decides
    IF n.next_check_at <= at THEN
        n.next_check_at := NULL;
    END IF;
END;
$$;

-- What one evaluation does to each instance of rule r, given the metric's
-- result m: one row per instance, existing (before) or new (before NULL).
-- present is false for a key the metric no longer returns.
CREATE FUNCTION herald._plan_evaluation(r herald.rule_defs, m herald._metric_result,
                                        at timestamptz)
RETURNS TABLE (before herald.rule_instances, after herald.rule_instances,
               event text, present boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o record;
    t record;
    v_base herald.rule_instances;
BEGIN
    v_base.rule_id := r.id;
    v_base.state := 'ok';
    v_base.since := at;

    IF m.error IS NOT NULL THEN
        -- every instance is in error; a rule without any gets one
        present := true;
        FOR o IN SELECT i FROM herald.rule_instances i WHERE i.rule_id = r.id
                 UNION ALL
                 SELECT NULL::herald.rule_instances
                  WHERE NOT EXISTS (SELECT 1 FROM herald.rule_instances i
                                     WHERE i.rule_id = r.id)
        LOOP
            before := o.i;
            IF before.rule_id IS NULL THEN
                after := v_base;
                after.key := '';
            ELSE
                after := before;
            END IF;
            event := CASE WHEN after.state <> 'error' OR before.rule_id IS NULL
                          THEN 'rule.error' END;
            after.since := CASE WHEN after.state = 'error' THEN after.since ELSE at END;
            after.state := 'error';
            after.error := m.error;
            after.value := NULL;
            after.pending_since := NULL;
            after.next_check_at := NULL;
            after.last_evaluated_at := at;
            IF before.rule_id IS NULL THEN
                before := NULL;
            END IF;
            RETURN NEXT;
        END LOOP;
        RETURN;
    END IF;

    FOR o IN SELECT coalesce(obs.key, i.key) AS key, obs.value,
                    obs.key IS NOT NULL AS present, i.inst
               FROM unnest(m.keys, m.vals) AS obs(key, value)
               FULL JOIN (SELECT x.key, x AS inst FROM herald.rule_instances x
                           WHERE x.rule_id = r.id) i
                 ON i.key = obs.key
              ORDER BY 1
    LOOP
        IF (o.inst).rule_id IS NULL THEN
            before := NULL;
            v_base.key := o.key;
            t := herald._transition(r, v_base, o.value, at);
        ELSIF r.grouped AND o.key = '' AND NOT o.present THEN
            -- the stand-in a failing grouped metric left: gone without a word
            before := o.inst;
            after := o.inst;
            after.state := 'ok';
            event := NULL;
            present := false;
            RETURN NEXT;
            CONTINUE;
        ELSE
            before := o.inst;
            t := herald._transition(r, before, o.value, at);
        END IF;
        after := t.n;
        event := t.event;
        present := o.present;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- The payload of a threshold event, with the metric's recent values.
CREATE FUNCTION herald._threshold_payload(r herald.rule_defs, before herald.rule_instances,
                                          after herald.rule_instances)
RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_strip_nulls(jsonb_build_object(
    'key', nullif(after.key, ''),
    'value', after.value,
    'op', r.op,
    'threshold', r.threshold,
    'warning_threshold', r.warning_threshold,
    'recover_threshold', r.recover_threshold,
    'state', after.state,
    'previous_state', coalesce(before.state, 'ok'),
    'level', after.level,
    'since', after.firing_since,
    'fired_event_id', after.fired_event_id,   -- the episode's rule.fired event
    'error', after.error,
    -- the last values, oldest first, for {{sparkline}}
    'recent', coalesce((SELECT jsonb_agg(x.value ORDER BY x.evaluated_at)
                          FROM (SELECT l.value, l.evaluated_at FROM herald.evaluation_log l
                                 WHERE l.rule_id = r.id AND l.key = after.key
                                   AND l.value IS NOT NULL
                                 ORDER BY l.evaluated_at DESC LIMIT 19) x), '[]')
              || coalesce(to_jsonb(after.value), '[]')));

-- A decision meeting, for a rule that asks for one, when it fires or
-- escalates at critical level: at the next full hour, for the rule's
-- meeting length.  Email channels send it as an invitation.
CREATE FUNCTION herald._meeting(r herald.rule_defs, event text, after herald.rule_instances)
RETURNS jsonb
LANGUAGE sql STABLE
RETURN CASE WHEN r.meeting IS NOT NULL AND event IN ('rule.fired', 'rule.escalated')
                 AND after.level = 'critical'
            THEN jsonb_build_object('meeting', jsonb_build_object(
                     'start', to_char(date_trunc('hour', now() AT TIME ZONE 'UTC') + interval '1 hour',
                                      'YYYYMMDD"T"HH24MISS"Z"'),
                     'end', to_char(date_trunc('hour', now() AT TIME ZONE 'UTC') + interval '1 hour'
                                    + r.meeting, 'YYYYMMDD"T"HH24MISS"Z"'),
                     'minutes', extract(epoch FROM r.meeting) / 60))
            ELSE '{}' END;

-- Evaluate a threshold rule now and apply the result: called by the
-- scheduler, one transaction per evaluation.  Returns when the rule's next
-- timer falls due (end of a pending period, a reminder), or NULL.
CREATE FUNCTION herald._evaluate(rule_id integer) RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r herald.rule_defs;
    m herald._metric_result;
    p record;
    v_after herald.rule_instances;
    v_event bigint;
    v_at timestamptz := now();
BEGIN
    SELECT * INTO r FROM herald.rule_defs x
     WHERE x.id = _evaluate.rule_id AND x.kind = 'threshold' AND x.enabled;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    m := herald._run_metric(r.id);

    FOR p IN SELECT * FROM herald._plan_evaluation(r, m, v_at) LOOP
        v_after := p.after;
        v_event := NULL;
        IF p.event IS NOT NULL THEN
            v_event := herald._emit(r.id, p.event,
                                    herald._threshold_payload(r, p.before, v_after)
                                    || herald._meeting(r, p.event, v_after));
            IF p.event = 'rule.fired' THEN
                v_after.fired_event_id := v_event;
            END IF;
        END IF;

        IF NOT p.present AND v_after.state = 'ok' THEN
            DELETE FROM herald.rule_instances i
             WHERE i.rule_id = r.id AND i.key = v_after.key;
        ELSE
            INSERT INTO herald.rule_instances AS i
            SELECT v_after.*
            ON CONFLICT ON CONSTRAINT rule_instances_pkey DO UPDATE
               SET state = EXCLUDED.state, level = EXCLUDED.level, value = EXCLUDED.value,
                   since = EXCLUDED.since, pending_since = EXCLUDED.pending_since,
                   firing_since = EXCLUDED.firing_since,
                   fired_event_id = EXCLUDED.fired_event_id,
                   last_notified_at = EXCLUDED.last_notified_at,
                   last_evaluated_at = EXCLUDED.last_evaluated_at,
                   next_check_at = EXCLUDED.next_check_at, error = EXCLUDED.error,
                   -- an acknowledgement recorded meanwhile stays with its episode
                   acknowledged_at = CASE WHEN EXCLUDED.firing_since IS NOT DISTINCT FROM i.firing_since
                                          THEN i.acknowledged_at END;
        END IF;

        INSERT INTO herald.evaluation_log (rule_id, key, evaluated_at, value, duration_ms,
                                           state_before, state_after, level, event_id, error)
        VALUES (r.id, v_after.key, v_at, v_after.value, m.duration_ms,
                (p.before).state, v_after.state, v_after.level, v_event, v_after.error);
    END LOOP;

    RETURN (SELECT min(i.next_check_at) FROM herald.rule_instances i WHERE i.rule_id = r.id);
END;
$$;

-- Declaration -----------------------------------------------------------------

CREATE FUNCTION herald._declare_threshold(
    name              text,
    metric            text,
    op                text,
    threshold         numeric,
    channels          text[],
    watch             regclass[] DEFAULT NULL,
    every             interval DEFAULT NULL,
    message           text DEFAULT NULL,
    warning_threshold numeric DEFAULT NULL,
    recover_threshold numeric DEFAULT NULL,
    pending_for       interval DEFAULT NULL,
    repeat_every      interval DEFAULT NULL,
    min_interval      interval DEFAULT '0',
    no_data           text DEFAULT 'ok',
    query_timeout     interval DEFAULT '5 seconds',
    followup_after    interval DEFAULT NULL,
    followup_every    interval DEFAULT NULL,
    meeting           interval DEFAULT NULL,
    search_path       text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_channel_ids integer[];
    v_grouped boolean;
    v_watch regclass[] := '{}';
    v_tbl regclass;
    v_above boolean := _declare_threshold.op IN ('>', '>=');
    v_id integer;
    v_rule herald.rule_defs;
BEGIN
    PERFORM herald._check_rule_name(_declare_threshold.name);

    IF _declare_threshold.metric IS NULL THEN
        RAISE EXCEPTION 'metric must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Give a query returning one number, or a key and a number per row.';
    END IF;
    IF _declare_threshold.op IS NULL OR _declare_threshold.op NOT IN ('>', '>=', '<', '<=', '=', '<>') THEN
        RAISE EXCEPTION 'unknown comparison operator "%"', _declare_threshold.op
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Operators are >, >=, <, <=, = and <>.';
    END IF;
    IF _declare_threshold.threshold IS NULL THEN
        RAISE EXCEPTION 'threshold must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_channel_ids := herald._channel_ids(_declare_threshold.channels);

    IF _declare_threshold.watch IS NOT NULL THEN
        FOREACH v_tbl IN ARRAY _declare_threshold.watch LOOP
            IF v_tbl IS NULL THEN
                RAISE EXCEPTION 'watch must not contain null'
                    USING ERRCODE = 'null_value_not_allowed';
            END IF;
            PERFORM herald._check_watchable(v_tbl);
            IF NOT v_tbl = ANY (v_watch) THEN
                v_watch := v_watch || v_tbl;
            END IF;
        END LOOP;
    END IF;
    IF cardinality(v_watch) = 0 AND _declare_threshold.every IS NULL THEN
        RAISE EXCEPTION 'a threshold rule needs watch or every'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'watch lists the tables whose commits cause an evaluation; every schedules evaluations.';
    END IF;
    IF _declare_threshold.every IS NOT NULL AND _declare_threshold.every < '1 second' THEN
        RAISE EXCEPTION 'every must be at least 1 second'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF _declare_threshold.warning_threshold IS NOT NULL THEN
        IF _declare_threshold.op IN ('=', '<>') THEN
            RAISE EXCEPTION 'warning_threshold needs one of the operators >, >=, <, <='
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_above AND _declare_threshold.warning_threshold >= _declare_threshold.threshold)
           OR (NOT v_above AND _declare_threshold.warning_threshold <= _declare_threshold.threshold) THEN
            RAISE EXCEPTION 'warning_threshold % is not less severe than threshold %',
                            _declare_threshold.warning_threshold, _declare_threshold.threshold
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('With operator %s the warning level is crossed first: it must be %s the threshold.',
                                    _declare_threshold.op, CASE WHEN v_above THEN 'below' ELSE 'above' END);
        END IF;
    END IF;
    IF _declare_threshold.recover_threshold IS NOT NULL THEN
        IF _declare_threshold.op IN ('=', '<>') THEN
            RAISE EXCEPTION 'recover_threshold needs one of the operators >, >=, <, <='
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_above AND _declare_threshold.recover_threshold
                        > coalesce(_declare_threshold.warning_threshold, _declare_threshold.threshold))
           OR (NOT v_above AND _declare_threshold.recover_threshold
                        < coalesce(_declare_threshold.warning_threshold, _declare_threshold.threshold)) THEN
            RAISE EXCEPTION 'recover_threshold % is beyond the alerting threshold %',
                            _declare_threshold.recover_threshold,
                            coalesce(_declare_threshold.warning_threshold, _declare_threshold.threshold)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('With operator %s an instance recovers %s: recover_threshold must be at or %s the lowest alerting threshold.',
                                    _declare_threshold.op,
                                    CASE WHEN v_above THEN 'at or below it' ELSE 'at or above it' END,
                                    CASE WHEN v_above THEN 'below' ELSE 'above' END);
        END IF;
    END IF;
    IF _declare_threshold.pending_for IS NOT NULL AND _declare_threshold.pending_for < '0' THEN
        RAISE EXCEPTION 'pending_for must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _declare_threshold.repeat_every IS NOT NULL AND _declare_threshold.repeat_every < '1 second' THEN
        RAISE EXCEPTION 'repeat_every must be at least 1 second'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _declare_threshold.min_interval IS NULL OR _declare_threshold.min_interval < '0' THEN
        RAISE EXCEPTION 'min_interval must not be null or negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _declare_threshold.no_data IS NULL OR _declare_threshold.no_data NOT IN ('ok', 'alert', 'keep') THEN
        RAISE EXCEPTION 'unknown no_data policy "%"', _declare_threshold.no_data
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Policies are ok, alert and keep.';
    END IF;
    IF _declare_threshold.query_timeout IS NULL OR _declare_threshold.query_timeout <= '0'
       OR _declare_threshold.query_timeout > '1 hour' THEN
        RAISE EXCEPTION 'query_timeout must be between 0 and 1 hour'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- parsed, planned and started as the declaring role
    v_grouped := herald._check_metric(_declare_threshold.metric, _declare_threshold.search_path);
    PERFORM herald._check_template(_declare_threshold.message, 'threshold', NULL);
    PERFORM herald._check_followups(_declare_threshold.followup_after,
                                    _declare_threshold.followup_every);
    IF _declare_threshold.meeting IS NOT NULL THEN
        IF _declare_threshold.meeting < '5 minutes' OR _declare_threshold.meeting > '8 hours' THEN
            RAISE EXCEPTION 'a meeting lasts between 5 minutes and 8 hours'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM herald.channel_defs c
                        WHERE c.id = ANY (v_channel_ids) AND c.kind = 'email') THEN
            RAISE EXCEPTION 'a meeting needs an email channel'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The invitation goes to the recipients of the rule''s email channels.';
        END IF;
    END IF;

    INSERT INTO herald.rule_defs (name, kind, owner, message, metric, grouped, search_path,
                                  op, threshold, warning_threshold, recover_threshold,
                                  watch, every, pending_for, repeat_every, min_interval,
                                  no_data, query_timeout, followup_after, followup_every,
                                  meeting)
    VALUES (_declare_threshold.name, 'threshold', herald._invoker(), _declare_threshold.message,
            _declare_threshold.metric, v_grouped, _declare_threshold.search_path,
            _declare_threshold.op, _declare_threshold.threshold, _declare_threshold.warning_threshold,
            _declare_threshold.recover_threshold, nullif(v_watch, '{}'), _declare_threshold.every,
            _declare_threshold.pending_for, _declare_threshold.repeat_every, _declare_threshold.min_interval,
            _declare_threshold.no_data, _declare_threshold.query_timeout,
            _declare_threshold.followup_after, _declare_threshold.followup_every,
            _declare_threshold.meeting)
    RETURNING * INTO v_rule;
    INSERT INTO herald.rule_channels (rule_id, channel_id)
    SELECT v_rule.id, unnest(v_channel_ids);
    PERFORM herald._sync_rule_triggers(v_rule);
END;
$$;
-- The declaration proper runs as the extension's owner; this wrapper runs
-- as the caller and hands it the caller's search_path, with which the metric
-- is checked and later run (as SET search_path FROM CURRENT would).
CREATE FUNCTION herald.on_threshold(
    name              text,
    metric            text,
    op                text,
    threshold         numeric,
    channels          text[],
    watch             regclass[] DEFAULT NULL,
    every             interval DEFAULT NULL,
    message           text DEFAULT NULL,
    warning_threshold numeric DEFAULT NULL,
    recover_threshold numeric DEFAULT NULL,
    pending_for       interval DEFAULT NULL,
    repeat_every      interval DEFAULT NULL,
    min_interval      interval DEFAULT '0',
    no_data           text DEFAULT 'ok',
    query_timeout     interval DEFAULT '5 seconds',
    followup_after    interval DEFAULT NULL,
    followup_every    interval DEFAULT NULL,
    meeting           interval DEFAULT NULL)
RETURNS void
LANGUAGE sql
BEGIN ATOMIC
    SELECT herald._declare_threshold(name, metric, op, threshold, channels, watch, every, message,
                                     warning_threshold, recover_threshold, pending_for,
                                     repeat_every, min_interval, no_data, query_timeout,
                                     followup_after, followup_every, meeting,
                                     pg_catalog.current_setting('search_path'));
END;
COMMENT ON FUNCTION herald.on_threshold(text, text, text, numeric, text[], regclass[], interval, text, numeric, numeric, interval, interval, interval, text, interval, interval, interval, interval) IS
    'Declare a threshold rule: a metric compared with thresholds, evaluated as watched tables commit and on a schedule';

-- Preview, silences -------------------------------------------------------------

CREATE FUNCTION herald.preview(name text)
RETURNS TABLE (key text, value numeric, state text, next_state text, level text,
               event text, error text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r herald.rule_defs;
BEGIN
    SELECT * INTO r FROM herald.rule_defs x WHERE x.name = preview.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule "%" does not exist', preview.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF r.kind <> 'threshold' THEN
        RAISE EXCEPTION 'rule "%" is not a threshold rule', preview.name
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Only threshold rules can be previewed.';
    END IF;
    IF NOT herald._may_see(r.owner, herald._invoker()) THEN
        RAISE EXCEPTION 'permission denied to preview rule "%"', preview.name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The metric runs as the rule''s owner.';
    END IF;
    RETURN QUERY
        SELECT (p.after).key, (p.after).value, (p.before).state, (p.after).state,
               (p.after).level, p.event, (p.after).error
          FROM herald._plan_evaluation(r, herald._run_metric(r.id), now()) p;
END;
$$;
COMMENT ON FUNCTION herald.preview(text) IS
    'Evaluate a threshold rule now: per instance, the value and the state it would move to; stores and sends nothing';

CREATE FUNCTION herald.silence(rule text, until timestamptz, reason text) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule_id integer;
    v_id integer;
BEGIN
    IF silence.rule IS NOT NULL THEN
        v_rule_id := (herald._own_rule(silence.rule, 'silence')).id;
    ELSE
        PERFORM herald._require_admin('silence every rule');
    END IF;
    IF silence.until IS NULL OR silence.until <= now() THEN
        RAISE EXCEPTION 'a silence must end in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF silence.reason IS NULL OR btrim(silence.reason) = '' THEN
        RAISE EXCEPTION 'a silence needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The reason is kept with the silence, for whoever wonders why nothing was sent.';
    END IF;
    INSERT INTO herald.silence_defs (rule_id, until, reason, created_by)
    VALUES (v_rule_id, silence.until, silence.reason, herald._invoker())
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION herald.silence(text, timestamptz, text) IS
    'Mute a rule (NULL: every rule) until a time: its events are recorded, not delivered';

CREATE FUNCTION herald.unsilence(rule text) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule_id integer;
    v_count integer;
BEGIN
    IF unsilence.rule IS NOT NULL THEN
        v_rule_id := (herald._own_rule(unsilence.rule, 'unsilence')).id;
    ELSE
        PERFORM herald._require_admin('unsilence every rule');
    END IF;
    UPDATE herald.silence_defs x SET ended_at = now(), ended_by = herald._invoker()
     WHERE x.rule_id IS NOT DISTINCT FROM v_rule_id
       AND x.ended_at IS NULL AND now() < x.until;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;
COMMENT ON FUNCTION herald.unsilence(text) IS
    'End the active silences of a rule (NULL: those of every rule); returns how many ended';
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
    CHECK (kind <> 'decision' OR decision IS NOT NULL)
);
CREATE INDEX decision_log_event ON herald.decision_log (event_id);
COMMENT ON TABLE herald.decision_log IS 'Acknowledgements and decisions recorded about events';

-- The event, with a clear error when there is none or the caller may not
-- see it (the same error: what it may not see does not exist for it).
CREATE FUNCTION herald._event(event_id bigint) RETURNS herald.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log;
BEGIN
    SELECT x.* INTO e FROM herald.event_log x
      LEFT JOIN herald.rule_defs r ON r.id = x.rule_id
     WHERE x.id = _event.event_id
       AND herald._may_see(r.owner, herald._invoker());
    -- a reminder stands for its episode: answers go to the rule.fired event
    IF FOUND AND e.type = 'rule.reminder' AND e.payload ? 'fired_event_id' THEN
        SELECT x.* INTO e FROM herald.event_log x
         WHERE x.id = (e.payload ->> 'fired_event_id')::bigint;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % does not exist', coalesce(_event.event_id::text, 'NULL')
            USING ERRCODE = 'undefined_object',
                  HINT = 'Event ids are in herald.events and in every message pg_herald sends.';
    END IF;
    RETURN e;
END;
$$;

CREATE FUNCTION herald.acknowledge(event_id bigint, note text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log := herald._event(acknowledge.event_id);
    v_id bigint;
BEGIN
    INSERT INTO herald.decision_log (event_id, kind, note, decided_by, recorded_by)
    VALUES (e.id, 'acknowledgement', acknowledge.note, herald._invoker(), herald._invoker())
    RETURNING id INTO v_id;
    -- the threshold episode the event belongs to reminds no more
    UPDATE herald.rule_instances i
       SET acknowledged_at = coalesce(i.acknowledged_at, now()),
           next_check_at = CASE WHEN i.state = 'pending' THEN i.next_check_at END
     WHERE i.rule_id = e.rule_id AND i.firing_since IS NOT NULL
       AND i.fired_event_id = coalesce((e.payload ->> 'fired_event_id')::bigint, e.id);
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION herald.acknowledge(bigint, text) IS
    'Record that someone saw an event; a firing threshold episode stops reminding';

CREATE FUNCTION herald.decide(event_id bigint, decision text, action text DEFAULT NULL,
                              decided_by text DEFAULT current_user)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log := herald._event(decide.event_id);
    v_id bigint;
BEGIN
    IF decide.decision IS NULL OR btrim(decide.decision) = '' THEN
        RAISE EXCEPTION 'a decision must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what was decided, for example ''no action: seasonal peak''.';
    END IF;
    IF decide.decided_by IS NULL OR btrim(decide.decided_by) = '' THEN
        RAISE EXCEPTION 'decided_by must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO herald.decision_log (event_id, kind, decision, action, decided_by, recorded_by)
    VALUES (e.id, 'decision', decide.decision, decide.action, decide.decided_by, herald._invoker())
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION herald.decide(bigint, text, text, text) IS
    'Record what was decided about an event (several decisions per event are kept)';

-- Follow-ups, sent by the scheduler: every event awaiting a decision
-- (rule.fired, rule.escalated and row events of rules with followup_after)
-- gets a decision.followup event on its rule's channels once it is
-- followup_after old, and again every followup_every, until a decision is
-- recorded.  decision_url, a template with {{event_id}}, gives the link.
-- Returns when the next follow-up falls due, NULL when none waits.
CREATE FUNCTION herald._send_followups(decision_url text) RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
BEGIN
    FOR e IN
        SELECT ev.id, ev.type, ev.rule_id, ev.created_at, r.followup_every,
               r.enabled AND r.followup_after IS NOT NULL AS active,
               EXISTS (SELECT 1 FROM herald.decision_log d
                        WHERE d.event_id = ev.id AND d.kind = 'decision') AS decided
          FROM herald.event_log ev
          LEFT JOIN herald.rule_defs r ON r.id = ev.rule_id
         WHERE ev.awaits_decision
           AND (r.id IS NULL OR NOT r.enabled OR r.followup_after IS NULL
                OR coalesce(ev.asked_at + r.followup_every,
                            CASE WHEN ev.asked_at IS NULL THEN ev.created_at + r.followup_after END)
                   <= now()
                OR ev.asked_at IS NOT NULL AND r.followup_every IS NULL)
         ORDER BY ev.created_at
           FOR UPDATE OF ev SKIP LOCKED
    LOOP
        IF e.decided OR NOT coalesce(e.active, false) THEN
            -- nothing more to ask: out of the index
            UPDATE herald.event_log x SET awaits_decision = NULL WHERE x.id = e.id;
            CONTINUE;
        END IF;
        IF (herald._active_silence(e.rule_id)).id IS NOT NULL THEN
            CONTINUE;           -- asked once the silence ends
        END IF;
        PERFORM herald._emit(e.rule_id, 'decision.followup', jsonb_strip_nulls(jsonb_build_object(
                    'about_event_id', e.id,
                    'about_type', e.type,
                    'about_created_at', e.created_at,
                    'sql', format('SELECT herald.decide(%s, %L);', e.id, 'what was decided'),
                    'link', CASE WHEN coalesce(decision_url, '') <> ''
                                 THEN replace(decision_url, '{{event_id}}', e.id::text) END)),
                 e.id);
        UPDATE herald.event_log x
           SET asked_at = now(),
               awaits_decision = CASE WHEN e.followup_every IS NOT NULL THEN true END
         WHERE x.id = e.id;
    END LOOP;

    -- when the next one falls due
    RETURN (SELECT min(coalesce(ev.asked_at + r.followup_every, ev.created_at + r.followup_after))
              FROM herald.event_log ev JOIN herald.rule_defs r ON r.id = ev.rule_id
             WHERE ev.awaits_decision AND r.enabled);
END;
$$;

CREATE VIEW herald.decisions WITH (security_barrier) AS
SELECT d.id, d.event_id, e.type AS event_type, e.rule, d.kind, d.decision, d.action, d.note,
       d.decided_by, d.recorded_by, d.decided_at
  FROM herald.decision_log d
  LEFT JOIN herald.event_log e ON e.id = d.event_id
  LEFT JOIN herald.rule_defs r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

-- The story of each event, in time order: the evaluations that led to it
-- (the one that emitted it, and the pending period before it), the event,
-- every delivery attempt, follow-ups, acknowledgements and decisions.
CREATE VIEW herald.timeline WITH (security_barrier) AS
SELECT t.event_id, t.at, t.kind, t.detail
  FROM (
    SELECT e.id AS event_id, l.evaluated_at AS at, 'evaluation'::text AS kind,
           format('%s: value %s, %s -> %s', coalesce(nullif(l.key, ''), r.name),
                  coalesce(l.value::text, 'no data'), coalesce(l.state_before, 'new'),
                  l.state_after) AS detail
      FROM herald.event_log e
      JOIN herald.rule_defs r ON r.id = e.rule_id AND r.kind = 'threshold'
                              AND e.type LIKE 'rule.%'
      -- the pending evaluations since the instance last was anything but pending
      CROSS JOIN LATERAL (
            SELECT max(p.evaluated_at) AS since FROM herald.evaluation_log p
             WHERE p.rule_id = e.rule_id AND p.key = coalesce(e.payload ->> 'key', '')
               AND p.evaluated_at < e.created_at AND p.state_after <> 'pending') b
      JOIN herald.evaluation_log l
        ON l.rule_id = e.rule_id AND l.key = coalesce(e.payload ->> 'key', '')
       -- the emitting evaluation has the event's time (the same now())
       AND l.evaluated_at > coalesce(b.since, '-infinity') AND l.evaluated_at <= e.created_at
       AND (l.event_id = e.id OR l.state_after = 'pending')
    UNION ALL
    SELECT e.id, e.created_at, 'event',
           e.type || coalesce(' of rule ' || e.rule, '') || CASE WHEN e.silenced_by IS NOT NULL THEN ' (silenced)' ELSE '' END
      FROM herald.event_log e
    UNION ALL
    SELECT d.event_id, a.started_at, 'delivery',
           format('%s attempt %s: %s', c.name, a.attempt,
                  coalesce('HTTP ' || a.http_status, '') || coalesce(' ' || a.error, ''))
      FROM herald.attempt_log a
      JOIN herald.delivery_queue d ON d.id = a.delivery_id
      JOIN herald.channel_defs c ON c.id = d.channel_id
    UNION ALL
    SELECT f.about_event_id, f.created_at, 'followup',
           'asked what was decided' || CASE WHEN f.silenced_by IS NOT NULL THEN ' (silenced)' ELSE '' END
      FROM herald.event_log f
     WHERE f.about_event_id IS NOT NULL
    UNION ALL
    SELECT d.event_id, d.decided_at, d.kind,
           CASE WHEN d.kind = 'decision'
                THEN format('%s decided: %s', d.decided_by, d.decision) || coalesce(' (action: ' || d.action || ')', '')
                ELSE format('%s acknowledged', d.decided_by) || coalesce(': ' || d.note, '') END
      FROM herald.decision_log d
       ) t
  JOIN herald.event_log ev ON ev.id = t.event_id
  LEFT JOIN herald.rule_defs vr ON vr.id = ev.rule_id
 WHERE herald._may_see(vr.owner);

-- Per rule, for the events that call for a decision (rule.fired,
-- rule.escalated and row events) created in [since, until): how many, how
-- many got a decision, how long acknowledging and deciding took, and how
-- many follow-ups were sent about them.
CREATE FUNCTION herald.decision_report(since timestamptz, until timestamptz)
RETURNS TABLE (rule text, events bigint, decided bigint, decided_share numeric,
               median_time_to_acknowledge interval, median_time_to_decide interval,
               followups bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT e.rule,
           count(*),
           count(f.first_decision),
           round(count(f.first_decision)::numeric / count(*), 4),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY f.first_ack - e.created_at),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY f.first_decision - e.created_at),
           sum(f.followups)::bigint
      FROM herald.event_log e
      LEFT JOIN herald.rule_defs r ON r.id = e.rule_id
      CROSS JOIN LATERAL (
            SELECT min(d.decided_at) FILTER (WHERE d.kind = 'acknowledgement') AS first_ack,
                   min(d.decided_at) FILTER (WHERE d.kind = 'decision') AS first_decision,
                   (SELECT count(*) FROM herald.event_log x
                     WHERE x.about_event_id = e.id) AS followups
              FROM herald.decision_log d WHERE d.event_id = e.id) f
     WHERE e.created_at >= decision_report.since AND e.created_at < decision_report.until
       -- the caller's rules, or all of them for herald_admin
       AND herald._may_see(r.owner, herald._invoker())
       AND (e.type IN ('rule.fired', 'rule.escalated') OR e.type LIKE 'row.%')
     GROUP BY e.rule
     ORDER BY e.rule;
END;
COMMENT ON FUNCTION herald.decision_report(timestamptz, timestamptz) IS
    'Per rule: events calling for a decision, the share decided, median times to acknowledge and to decide';
-------------------------------------------------------------------------------
-- Privileges
--
-- Nothing is granted to PUBLIC.  Two roles, created when missing (they are
-- cluster-wide and outlive the extension):
--
--   herald_author  declares, previews, silences, enables, disables and drops
--                  its own rules; acknowledges events and records decisions;
--                  reads rules, events, deliveries, attempts, evaluations,
--                  silences, decisions, the timeline and channels (masked);
--                  waits with flush().
--   herald_admin   all of that, for every rule; creates, alters, tests and
--                  drops channels; reads their secrets (herald.channel_defs);
--                  redelivers; silences every rule at once.
--
-- Neither gets any privilege on pg_herald's tables beyond SELECT for
-- herald_admin: the API functions are SECURITY DEFINER and check who calls
-- them (herald._invoker()).  No one but the extension's owner can create a
-- trigger or a policy on them.
-------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA herald FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'herald_author') THEN
        CREATE ROLE herald_author NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'herald_admin') THEN
        CREATE ROLE herald_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('herald_admin', 'herald_author', 'MEMBER') THEN
        GRANT herald_author TO herald_admin;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA herald TO herald_author, herald_admin;

GRANT SELECT ON herald.rules, herald.events, herald.deliveries, herald.attempts,
                herald.evaluations, herald.silences, herald.channels, herald.channel_health,
                herald.decisions, herald.timeline
    TO herald_author;

GRANT EXECUTE ON FUNCTION
    herald.on_change(text, regclass, text[], text[], text, text, interval, interval),
    herald.on_threshold(text, text, text, numeric, text[], regclass[], interval, text, numeric,
                        numeric, interval, interval, interval, text, interval, interval, interval,
                        interval),
    herald._declare_threshold(text, text, text, numeric, text[], regclass[], interval, text,
                              numeric, numeric, interval, interval, interval, text, interval,
                              interval, interval, interval, text),
    herald.preview(text),
    herald.silence(text, timestamptz, text),
    herald.unsilence(text),
    herald.drop_rule(text),
    herald.enable_rule(text),
    herald.disable_rule(text),
    herald.flush(interval),
    herald.acknowledge(bigint, text),
    herald.decide(bigint, text, text, text),
    herald.decision_report(timestamptz, timestamptz),
    herald.webhook_id(bigint),
    herald.webhook_signature(text, bigint, text, text),
    herald.generate_secret(),
    herald._mask_url(text),
    herald._may_see(regrole, regrole)
    TO herald_author;

GRANT SELECT ON ALL TABLES IN SCHEMA herald TO herald_admin;
GRANT EXECUTE ON FUNCTION
    herald.create_channel(text, text, text, text, integer, interval, interval, jsonb,
                          double precision, integer, text[], text, text),
    herald.alter_channel(text, text, text, integer, interval, interval, jsonb,
                         double precision, integer, text[], text, text, boolean, interval),
    herald.drop_channel(text),
    herald.test_channel(text),
    herald.redeliver(bigint)
    TO herald_admin;
