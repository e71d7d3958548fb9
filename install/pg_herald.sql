-------------------------------------------------------------------------------
-- The schema
--
-- pg_herald's code runs as the owner of schema herald, and everyone calls
-- herald.* trusting it.  CREATE EXTENSION adopts a schema herald that
-- already exists: if someone else created it, its owner could add to it,
-- for instance a herald.acknowledge(integer) that SELECT
-- herald.acknowledge(42) would call, as whoever runs it.  So the schema, and
-- everything in it, must belong to superusers.
-------------------------------------------------------------------------------

DO $$
DECLARE
    v_owner regrole;
BEGIN
    SELECT x.owner INTO v_owner
      FROM (SELECT n.nspowner AS owner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'herald'
            UNION ALL
            SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'herald'::regnamespace
            UNION ALL
            SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.relnamespace = 'herald'::regnamespace
            UNION ALL
            SELECT t.typowner FROM pg_catalog.pg_type t WHERE t.typnamespace = 'herald'::regnamespace) x
      JOIN pg_catalog.pg_roles r ON r.oid = x.owner
     WHERE NOT r.rolsuper
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'schema "herald" holds objects of role %, which is not a superuser', v_owner
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'pg_herald runs as the owner of schema herald, and its users call whatever that schema holds.',
                  HINT = 'Drop or rename that schema herald, then create the extension again.';
    END IF;
END;
$$;

-------------------------------------------------------------------------------
-- Internal functions (C)
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION herald.capture() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_capture';
COMMENT ON FUNCTION herald.capture() IS 'Statement trigger installed by row rules on watched tables';

CREATE OR REPLACE FUNCTION herald._rules_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_rules_changed';

CREATE OR REPLACE FUNCTION herald._check_condition(on_table regclass, condition text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_condition';

CREATE OR REPLACE FUNCTION herald._check_template(message text, kind text, on_table regclass) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_template';

-- A time zone the time filter can show times in (src/filters.c).
CREATE OR REPLACE FUNCTION herald._check_timezone(zone text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_timezone';

-- The event types a rule of this kind emits that may have a message of
-- their own (messages => '{"rule.resolved": "..."}').
CREATE OR REPLACE FUNCTION herald._message_types(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE
RETURN CASE kind
    WHEN 'row' THEN ARRAY['row.inserted', 'row.updated', 'row.deleted']
    ELSE ARRAY['rule.fired', 'rule.escalated', 'rule.reminder', 'rule.resolved', 'rule.error']
END;

-- A rule's messages: an object of event types of its kind and their
-- templates, each checked as the rule's message is.
CREATE OR REPLACE FUNCTION herald._check_messages(messages jsonb, kind text, on_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_types text[] := herald._message_types(kind);
    v_hint text := format('Event types of %s rules: %s.', kind, array_to_string(v_types, ', '));
    v_entry record;
    v_state text;
    v_message text;
    v_detail text;
    v_hint2 text;
BEGIN
    IF messages IS NULL THEN
        RETURN;
    END IF;
    IF jsonb_typeof(messages) <> 'object' THEN
        RAISE EXCEPTION 'messages must be a JSON object of event types and templates'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = v_hint;
    END IF;
    FOR v_entry IN SELECT * FROM jsonb_each(messages) ORDER BY key LOOP
        IF v_entry.key = ANY (herald._message_types(CASE kind WHEN 'row' THEN 'threshold' ELSE 'row' END)) THEN
            RAISE EXCEPTION 'a % rule has no event type "%"', kind, v_entry.key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = v_hint;
        END IF;
        IF NOT v_entry.key = ANY (v_types) THEN
            RAISE EXCEPTION 'unknown event type "%" in messages', left(v_entry.key, 100)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = v_hint;
        END IF;
        IF jsonb_typeof(v_entry.value) <> 'string' THEN
            RAISE EXCEPTION 'the message of "%" in messages must be a string', v_entry.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('It is a JSON %s.', jsonb_typeof(v_entry.value)),
                      HINT = 'Each value is a template, such as "{{rule}} resolved: {{value}}".';
        END IF;
        BEGIN
            PERFORM herald._check_template(v_entry.value #>> '{}', kind, on_table);
        EXCEPTION WHEN OTHERS THEN
            -- the same error, saying which message it is about
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint2 = PG_EXCEPTION_HINT;
            v_detail := concat_ws(' ', format('In the message of "%s".', v_entry.key),
                                  nullif(v_detail, ''));
            IF coalesce(v_hint2, '') = '' THEN
                RAISE EXCEPTION '%', v_message USING ERRCODE = v_state, DETAIL = v_detail;
            END IF;
            RAISE EXCEPTION '%', v_message USING ERRCODE = v_state, DETAIL = v_detail, HINT = v_hint2;
        END;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION herald._check_target(kind text, target text) RETURNS void
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_target';

CREATE OR REPLACE FUNCTION herald._check_secret(secret text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_secret';

-- user:password, a token, or a .creds content (a user JWT and its nkey seed)
CREATE OR REPLACE FUNCTION herald._check_nats_secret(secret text) RETURNS void
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_nats_secret';

-- Whether the workers serve this database (src/pg_herald.c).
CREATE OR REPLACE FUNCTION herald._warn_unserved(consequence text) RETURNS void
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_warn_unserved';
CREATE OR REPLACE FUNCTION herald._status(OUT database text, OUT served boolean, OUT reason text,
                                          OUT served_database text, OUT delivery_workers integer,
                                          OUT scheduler boolean, OUT library_version text)
    STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_status';

CREATE OR REPLACE FUNCTION herald._note_work() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_note_work_sql';

-- Append one event to herald.event_log, to the channels channel_ids names
-- ('{}' or NULL: none), and return its id (src/event_log.c): the only way
-- an event is recorded.  NULL arguments but type and payload mean none.
CREATE OR REPLACE FUNCTION herald._append_event(type text, rule_id integer, rule text, payload jsonb,
                                                channel_ids integer[], silenced_by integer,
                                                awaits_decision boolean, about_event_id bigint)
RETURNS bigint
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_append_event_sql';

-- Refuse a value outside [low, high] (bounds written as the error shows
-- them, read as the value's type): the one check of the ranges the README
-- documents for every interval and number of the API.  NULL passes unless
-- required.
CREATE OR REPLACE FUNCTION herald._check_range(parameter text, value anyelement, low text, high text,
                                               required boolean DEFAULT false, hint text DEFAULT NULL)
RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_range_sql';

-- A threshold is any finite number: NaN and the infinities compare in ways
-- no rule means.
CREATE OR REPLACE FUNCTION herald._check_finite(parameter text, value numeric) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF _check_finite.value IN ('NaN', 'Infinity', '-Infinity') THEN
        RAISE EXCEPTION '% must be a finite number, not %', parameter, _check_finite.value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- The name of a channel or a rule: 1 to 200 characters, none of them a
-- control character (names go into messages, logs and headers, one line
-- each).
CREATE OR REPLACE FUNCTION herald._check_name(what text, name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF _check_name.name IS NULL OR _check_name.name = '' THEN
        RAISE EXCEPTION '% name must not be empty', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(_check_name.name) > 200 THEN
        RAISE EXCEPTION '% name must have at most 200 characters', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The name given has %s characters.', length(_check_name.name));
    END IF;
    IF _check_name.name ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION '% name must not contain control characters', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Newlines, tabs and other control characters are refused.';
    END IF;
END;
$$;

-- Does row-level security apply to the invoker on this table?
CREATE OR REPLACE FUNCTION herald._rls_applies(tbl regclass) RETURNS boolean
    STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_rls_applies';

-- The role that called pg_herald's API (src/api.c): rules are owned by it,
-- and its privileges are the ones checked.  An error outside an API call.
CREATE OR REPLACE FUNCTION herald._invoker() RETURNS regrole
    STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_invoker';

-- For the rest of the API call in progress, herald._invoker() names role:
-- alter_rule() checks a change with the rule's owner's rights.
CREATE OR REPLACE FUNCTION herald._act_for(role regrole) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_act_for';

-- What a role may see of rules and what they produced, and which rules it
-- may change: its own (and its roles') rules, or everything for
-- herald_admin.  Views ask for current_user, the API for the invoker.
CREATE OR REPLACE FUNCTION herald._may_see(owner regrole, viewer regrole DEFAULT current_user::regrole)
RETURNS boolean
LANGUAGE sql STABLE
RETURN pg_catalog.pg_has_role(viewer, 'herald_admin', 'USAGE')
    OR (owner IS NOT NULL AND pg_catalog.pg_has_role(viewer, owner, 'USAGE'));

-- Channels, secrets and deliveries are herald_admin's.
CREATE OR REPLACE FUNCTION herald._require_admin(what text) RETURNS void
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

CREATE OR REPLACE TRIGGER rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON herald.rule_defs
    FOR EACH STATEMENT EXECUTE FUNCTION herald._rules_changed();
CREATE OR REPLACE TRIGGER rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON herald.rule_channels
    FOR EACH STATEMENT EXECUTE FUNCTION herald._rules_changed();
CREATE OR REPLACE TRIGGER rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON herald.silence_defs
    FOR EACH STATEMENT EXECUTE FUNCTION herald._rules_changed();

CREATE OR REPLACE FUNCTION herald.touch() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'herald_touch';
COMMENT ON FUNCTION herald.touch() IS 'Statement trigger installed on tables that threshold rules watch';

CREATE OR REPLACE FUNCTION herald._run_metric(rule_id integer) RETURNS herald._metric_result
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_run_metric';

CREATE OR REPLACE FUNCTION herald._check_metric(metric text, search_path text) RETURNS boolean
    STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_check_metric';

-------------------------------------------------------------------------------
-- Public functions
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION herald.generate_secret() RETURNS text
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_generate_secret';
COMMENT ON FUNCTION herald.generate_secret() IS 'A new random Standard Webhooks secret (whsec_...)';

CREATE OR REPLACE FUNCTION herald.webhook_signature(msg_id text, "timestamp" bigint, body text, secret text)
    RETURNS text
    IMMUTABLE STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_webhook_signature';
COMMENT ON FUNCTION herald.webhook_signature(text, bigint, text, text) IS
    'The webhook-signature header value pg_herald sends for a request';

-- A delivery is one event sent to one channel; its id is computed from
-- both (channel ids have at most six digits), so that the writer records
-- the event only.  The inverse gives the event of a delivery id.
CREATE OR REPLACE FUNCTION herald._delivery_id(event_id bigint, channel_id integer) RETURNS bigint
LANGUAGE sql IMMUTABLE
RETURN event_id * 1000000 + channel_id;
CREATE OR REPLACE FUNCTION herald._delivery_event(delivery_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE
RETURN delivery_id / 1000000;

CREATE OR REPLACE FUNCTION herald.webhook_id(delivery_id bigint) RETURNS text
    STABLE STRICT LANGUAGE c AS 'MODULE_PATHNAME', 'herald_webhook_id';
COMMENT ON FUNCTION herald.webhook_id(bigint) IS
    'The webhook-id header of a delivery: stable across its retries, unique across installations';

CREATE OR REPLACE FUNCTION herald.flush(timeout interval DEFAULT '10 seconds') RETURNS boolean
    VOLATILE LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'herald_flush';
COMMENT ON FUNCTION herald.flush(interval) IS
    'Wait until the deliveries committed before the call are delivered or dead; true when that happened in time';

-- Channels --------------------------------------------------------------------

-- Check a channel's settings as a whole, for create_channel and
-- alter_channel alike.  Each error names the setting.
CREATE OR REPLACE FUNCTION herald._check_channel(c herald.channel_defs) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_header record;
    v_address text;
    v_email constant text := '^[^][[:space:]<>()@",;:\\]+@[^][[:space:]<>()@",;:\\]+$';
BEGIN
    IF c.kind IS NULL OR c.kind NOT IN ('webhook', 'slack', 'teams', 'google_chat', 'email', 'notify',
                                        'nats') THEN
        RAISE EXCEPTION 'unknown channel kind "%"', c.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Supported kinds: webhook, slack, teams, google_chat, email, notify, nats.';
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
    IF c.kind = 'nats' THEN
        -- the subject after the servers: a channel template
        PERFORM herald._check_template(substring(c.target FROM '^[a-z]+://[^/]*/(.*)$'),
                                       'channel', NULL);
    END IF;

    IF c.kind = 'webhook' THEN
        PERFORM herald._check_secret(c.secret);
    ELSIF c.kind = 'nats' THEN
        PERFORM herald._check_nats_secret(c.secret);
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
            -- 254 bytes: the longest address SMTP carries (RFC 5321)
            IF octet_length(v_address) > 254 THEN
                RAISE EXCEPTION 'email address "%..." is longer than 254 bytes', left(v_address, 40)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
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

    IF c.slack_signing_secret IS NOT NULL THEN
        IF c.kind <> 'slack' THEN
            RAISE EXCEPTION 'slack_signing_secret is a setting of slack channels'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF c.slack_signing_secret !~ '^[[:alnum:]]{16,128}$' THEN
            RAISE EXCEPTION 'a Slack signing secret is 16 to 128 letters and digits'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Copy it from the app''s "Basic Information" page, "App Credentials".';
        END IF;
    END IF;

    PERFORM herald._check_timezone(c.timezone);

    -- the ranges keep the lease (now() + timeout), the backoff and the
    -- rate's token bucket in range
    PERFORM herald._check_range('max_attempts', c.max_attempts, '1', '100', required => true);
    PERFORM herald._check_range('retry_delay', c.retry_delay, '10 milliseconds', '1 day',
                                required => true);
    PERFORM herald._check_range('timeout', c.timeout, '100 milliseconds', '10 minutes',
                                required => true);
    PERFORM herald._check_range('rate_limit', c.rate_limit, '0.001', '1000000',
                                hint => 'It counts messages per second; NULL means no limit.');
    PERFORM herald._check_range('max_concurrency', c.max_concurrency, '1', '1000', required => true);
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
                                       'webhook-id', 'webhook-timestamp', 'webhook-signature',
                                       'nats-msg-id') THEN
                RAISE EXCEPTION 'header "%" is set by pg_herald', v_header.key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(v_header.value) <> 'string'
               OR v_header.value #>> '{}' ~ '[\x01-\x1f\x7f]' THEN
                RAISE EXCEPTION 'value of header "%" must be a string without control characters', v_header.key
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'Newlines, tabs and other control characters are refused.';
            END IF;
        END LOOP;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION herald.create_channel(
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
    subject      text DEFAULT NULL,
    slack_signing_secret text DEFAULT NULL,
    timezone     text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c herald.channel_defs;
BEGIN
    PERFORM herald._require_admin('create a channel');
    PERFORM herald._check_name('channel', create_channel.name);
    PERFORM herald._warn_unserved('Nothing sent to this channel will be delivered.');
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
    c.slack_signing_secret := create_channel.slack_signing_secret;
    c.timezone := create_channel.timezone;
    PERFORM herald._check_channel(c);

    -- a channel's id is the last six digits of its deliveries' ids
    c.id := nextval('herald.channel_defs_id_seq');
    IF c.id > 999999 THEN
        RAISE EXCEPTION 'cannot create more than 999999 channels'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'Channel ids go from 1 to 999999, and those of dropped channels are not used again.';
    END IF;
    INSERT INTO herald.channel_defs (id, name, kind, target, secret, headers, recipients, sender, subject,
                                 max_attempts, retry_delay, timeout, rate_limit, max_concurrency,
                                 created_by, slack_signing_secret, timezone)
    VALUES (c.id, c.name, c.kind, c.target, c.secret, c.headers, c.recipients, c.sender, c.subject,
            c.max_attempts, c.retry_delay, c.timeout, c.rate_limit, c.max_concurrency,
            herald._invoker(), c.slack_signing_secret, c.timezone);
END;
$$;
COMMENT ON FUNCTION herald.create_channel(text, text, text, text, integer, interval, interval, jsonb, double precision, integer, text[], text, text, text, text) IS
    'Create a channel: a destination and its delivery policy';

-- NULL leaves a setting as it is.  A new secret of a webhook channel starts
-- a rotation: the previous one keeps signing (a second signature) for
-- rotation, so that receivers can switch at their pace.
CREATE OR REPLACE FUNCTION herald.alter_channel(
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
    rotation     interval DEFAULT '1 day',
    slack_signing_secret text DEFAULT NULL,
    timezone     text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c herald.channel_defs;
    v_old herald.channel_defs;
BEGIN
    PERFORM herald._require_admin('alter a channel');
    SELECT * INTO v_old FROM herald.channel_defs x WHERE x.name = alter_channel.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel "%" does not exist', left(alter_channel.name, 200)
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM herald._check_range('rotation', alter_channel.rotation, '0', '30 days', required => true,
                                hint => 'The previous secret keeps signing for that long.');
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
    -- '' turns Slack interactivity off
    c.slack_signing_secret := CASE WHEN alter_channel.slack_signing_secret = '' THEN NULL
                                   ELSE coalesce(alter_channel.slack_signing_secret, c.slack_signing_secret) END;
    -- '' goes back to herald.timezone
    c.timezone := CASE WHEN alter_channel.timezone = '' THEN NULL
                       ELSE coalesce(alter_channel.timezone, c.timezone) END;
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
           enabled = c.enabled, disabled_reason = c.disabled_reason,
           slack_signing_secret = c.slack_signing_secret, timezone = c.timezone
     WHERE x.id = c.id;
END;
$$;
COMMENT ON FUNCTION herald.alter_channel(text, text, text, integer, interval, interval, jsonb, double precision, integer, text[], text, text, boolean, interval, text, text) IS
    'Change a channel''s settings; a new webhook secret starts a rotation during which both sign';

CREATE OR REPLACE FUNCTION herald.test_channel(name text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c herald.channel_defs;
    v_event bigint;
BEGIN
    PERFORM herald._require_admin('test a channel');
    PERFORM herald._warn_unserved('The test message will not be delivered.');
    SELECT * INTO c FROM herald.channel_defs x WHERE x.name = test_channel.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel "%" does not exist', left(test_channel.name, 200)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT c.enabled THEN
        RAISE EXCEPTION 'channel "%" is disabled', test_channel.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Enable it with herald.alter_channel(name, enabled => true).';
    END IF;
    v_event := herald._append_event('channel.test', NULL, NULL,
                                    jsonb_build_object('channel', c.name,
                                                       'requested_by', herald._invoker()::text),
                                    ARRAY[c.id], NULL, NULL, NULL);
    RETURN herald._delivery_id(v_event, c.id);
END;
$$;
COMMENT ON FUNCTION herald.test_channel(text) IS
    'Send a channel.test event through the whole delivery path; returns its delivery id';

CREATE OR REPLACE FUNCTION herald.drop_channel(name text) RETURNS void
LANGUAGE plpgsql
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
        RAISE EXCEPTION 'channel "%" does not exist', left(drop_channel.name, 200)
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
    -- those in the queue and those not yet read from the event log
    SELECT count(*) INTO v_pending FROM herald._deliveries d
     WHERE d.channel_id = v_id AND d.status = 'pending';
    -- the channel's deliveries, and the events no other channel needs (the
    -- channels of an event can only have been dropped: ids are not reused).
    -- The queue is locked first, whole: a delivery worker's transaction
    -- updates several of the channel's rows, in its own order, and deleting
    -- them row by row beside it could deadlock; this waits for it instead.
    LOCK TABLE herald.delivery_queue IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM herald.attempt_log a WHERE a.channel_id = v_id;
    DELETE FROM herald.delivery_queue d WHERE d.channel_id = v_id;
    DELETE FROM herald.event_log e
     WHERE v_id = ANY (e.channel_ids)
       AND NOT EXISTS (SELECT 1 FROM unnest(e.channel_ids) AS o(channel_id)
                        JOIN herald.channel_defs c ON c.id = o.channel_id
                       WHERE o.channel_id <> v_id);
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
-- rules that watch it, one herald_watch trigger.  A table that no longer
-- exists has no triggers left to change.
CREATE OR REPLACE FUNCTION herald._sync_triggers(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text;
    v_name text;
    v_wanted boolean;
    v_exists boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl) THEN
        RETURN;
    END IF;
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

-- A new rule's name: a valid name (herald._check_name), not taken.
CREATE OR REPLACE FUNCTION herald._check_rule_name(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM herald._check_name('rule', _check_rule_name.name);
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
CREATE OR REPLACE FUNCTION herald._channel_ids(channels text[]) RETURNS integer[]
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
            RAISE EXCEPTION 'channel "%" does not exist', left(v_channel, 200)
                USING ERRCODE = 'undefined_object';
        END IF;
        IF NOT v_id = ANY (v_ids) THEN
            v_ids := v_ids || v_id;
        END IF;
    END LOOP;
    RETURN v_ids;
END;
$$;

-- The answers a rule offers in its messages: 1 to 10 labels of 1 to 75
-- characters (what a Slack button shows at most), distinct; each becomes a
-- button.
CREATE OR REPLACE FUNCTION herald._check_choices(choices text[], announce_decisions boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_choice text;
BEGIN
    IF announce_decisions IS NULL THEN
        RAISE EXCEPTION 'announce_decisions must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF choices IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(choices) NOT BETWEEN 1 AND 10 OR array_ndims(choices) <> 1 THEN
        RAISE EXCEPTION 'a rule offers 1 to 10 choices, not %', cardinality(choices)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave choices NULL to offer "Acknowledge" and "Record a decision".';
    END IF;
    FOREACH v_choice IN ARRAY choices LOOP
        IF v_choice IS NULL OR btrim(v_choice) = '' OR char_length(v_choice) > 75
           OR v_choice <> btrim(v_choice) OR v_choice ~ '[\x01-\x1f\x7f]' THEN
            RAISE EXCEPTION 'invalid choice "%"', left(coalesce(v_choice, 'NULL'), 100)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A choice is a label of 1 to 75 characters, without leading or trailing spaces or control characters.';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT lower(c)) FROM unnest(choices) c) <> cardinality(choices) THEN
        RAISE EXCEPTION 'choices must be distinct'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- Follow-ups: after a delay, and again every so often if asked to.
CREATE OR REPLACE FUNCTION herald._check_followups(followup_after interval, followup_every interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM herald._check_range('followup_after', followup_after, '1 second', '30 days');
    IF followup_every IS NOT NULL AND followup_after IS NULL THEN
        RAISE EXCEPTION 'followup_every needs followup_after'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'followup_after says when the first follow-up goes out.';
    END IF;
    PERFORM herald._check_range('followup_every', followup_every, '1 second', '30 days');
END;
$$;

-- A table a rule may watch: an ordinary or partitioned table, not a
-- temporary one (rules outlive the session that owns it), outside the
-- system and pg_herald's schemas, that the declaring role can read as
-- SELECT would: USAGE on its schema and SELECT on it.
CREATE OR REPLACE FUNCTION herald._check_watchable(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel record;
BEGIN
    SELECT c.relkind, c.relpersistence, c.relnamespace, n.nspname INTO v_rel
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
    IF v_rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot watch "%": it is a temporary table', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'A rule outlives the session a temporary table belongs to.';
    END IF;
    IF v_rel.nspname IN ('herald', 'pg_catalog', 'information_schema')
       OR v_rel.nspname LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'cannot watch "%": it belongs to schema "%"', tbl, v_rel.nspname
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NOT has_schema_privilege(herald._invoker(), v_rel.relnamespace, 'USAGE')
       OR NOT has_table_privilege(herald._invoker(), tbl, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied to watch table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A rule can only watch tables its owner may read: USAGE on the schema and SELECT on the table.';
    END IF;
END;
$$;

-- Row rules pass whole rows to their channels: a table whose row-level
-- security applies to the rule's owner cannot be captured faithfully.
CREATE OR REPLACE FUNCTION herald._check_capturable(tbl regclass) RETURNS void
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

-- The facts of a row event: the columns its messages show, in this order,
-- after the table and the operation.  A rule's facts (checked by
-- herald._check_facts), or else the table's first 6 columns in table order
-- (attnum), as they are now: the claim and the decision page resolve them
-- when a message is rendered, so that capture does nothing for them and a
-- column added or renamed since the declaration is shown as it is.  NULL
-- when the table is gone: the renderer then takes the row's first columns.
CREATE OR REPLACE FUNCTION herald._fact_columns(facts text[], on_table regclass) RETURNS text[]
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(facts, nullif(ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                                         WHERE a.attrelid = on_table AND a.attnum > 0
                                           AND NOT a.attisdropped
                                         ORDER BY a.attnum LIMIT 6), '{}'))
$$;

-- A row rule's facts => : NULL (the first columns), or 1 to 8 distinct
-- columns of the table.
CREATE OR REPLACE FUNCTION herald._check_facts(on_table regclass, facts text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_col text;
BEGIN
    IF facts IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(facts) NOT BETWEEN 1 AND 8 THEN
        RAISE EXCEPTION 'facts must list 1 to 8 columns, not %', cardinality(facts)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A message shows the table, the operation and at most 8 columns; without facts, the table''s first 6.';
    END IF;
    FOREACH v_col IN ARRAY facts LOOP
        IF v_col IS NULL THEN
            RAISE EXCEPTION 'facts must not contain null'
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = on_table AND a.attname = v_col
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of facts does not exist in table %', left(v_col, 100), on_table
                USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;
    IF cardinality(facts) <> (SELECT count(DISTINCT f) FROM unnest(facts) f) THEN
        RAISE EXCEPTION 'facts lists a column more than once'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- A row rule's definition r, checked as a declaration checks it (with the
-- rights of herald._invoker()), with the channels it names: returns r with
-- its operations normalized (upper case, each once).  on_change() and
-- alter_rule() both call it.
CREATE OR REPLACE FUNCTION herald._check_row_rule(r herald.rule_defs, channels text[])
RETURNS herald.rule_defs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ops text[];
    v_op text;
BEGIN
    IF r.on_table IS NULL THEN
        RAISE EXCEPTION 'on_table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM herald._check_watchable(r.on_table);
    PERFORM herald._check_capturable(r.on_table);
    PERFORM herald._channel_ids(_check_row_rule.channels);

    IF r.operations IS NULL OR cardinality(r.operations) = 0 THEN
        RAISE EXCEPTION 'a rule needs at least one operation'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Operations are INSERT, UPDATE and DELETE.';
    END IF;
    v_ops := '{}';
    FOREACH v_op IN ARRAY r.operations LOOP
        IF v_op IS NULL OR upper(v_op) NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN
            RAISE EXCEPTION 'unknown operation "%"', v_op
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Operations are INSERT, UPDATE and DELETE.';
        END IF;
        IF NOT upper(v_op) = ANY (v_ops) THEN
            v_ops := v_ops || upper(v_op);
        END IF;
    END LOOP;
    r.operations := v_ops;

    PERFORM herald._check_condition(r.on_table, r.condition);
    PERFORM herald._check_template(r.message, 'row', r.on_table);
    PERFORM herald._check_facts(r.on_table, r.facts);
    PERFORM herald._check_messages(r.messages, 'row', r.on_table);
    r.messages := nullif(r.messages, '{}');
    PERFORM herald._check_followups(r.followup_after, r.followup_every);
    PERFORM herald._check_choices(r.choices, r.announce_decisions);
    RETURN r;
END;
$$;

CREATE OR REPLACE FUNCTION herald.on_change(
    name       text,
    on_table   regclass,
    channels   text[],
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE}',
    condition  text DEFAULT NULL,
    message    text DEFAULT NULL,
    followup_after interval DEFAULT NULL,
    followup_every interval DEFAULT NULL,
    choices    text[] DEFAULT NULL,
    announce_decisions boolean DEFAULT true,
    facts      text[] DEFAULT NULL,
    messages   jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs;
BEGIN
    PERFORM herald._check_rule_name(on_change.name);
    PERFORM herald._warn_unserved('The rule''s events will be recorded but not delivered.');
    v_rule.on_table := on_change.on_table;
    v_rule.operations := on_change.operations;
    v_rule.condition := on_change.condition;
    v_rule.message := on_change.message;
    v_rule.messages := on_change.messages;
    v_rule.followup_after := on_change.followup_after;
    v_rule.followup_every := on_change.followup_every;
    v_rule.choices := on_change.choices;
    v_rule.announce_decisions := on_change.announce_decisions;
    v_rule.facts := on_change.facts;
    v_rule := herald._check_row_rule(v_rule, on_change.channels);

    INSERT INTO herald.rule_defs (name, kind, owner, on_table, operations, condition, message,
                                  messages, followup_after, followup_every, choices,
                                  announce_decisions, facts)
    VALUES (on_change.name, 'row', herald._invoker(), v_rule.on_table, v_rule.operations,
            v_rule.condition, v_rule.message, v_rule.messages, v_rule.followup_after,
            v_rule.followup_every, v_rule.choices, v_rule.announce_decisions, v_rule.facts)
    RETURNING id INTO v_rule.id;
    INSERT INTO herald.rule_channels (rule_id, channel_id)
    SELECT v_rule.id, unnest(herald._channel_ids(on_change.channels));

    PERFORM herald._sync_triggers(on_change.on_table);
END;
$$;
COMMENT ON FUNCTION herald.on_change(text, regclass, text[], text[], text, text, interval, interval, text[], boolean, text[], jsonb) IS
    'Declare a row rule: matching committed row changes become events on the given channels';

-- A rule the invoker may change: its own (or its role's), or any for
-- herald_admin.
CREATE OR REPLACE FUNCTION herald._own_rule(name text, what text) RETURNS herald.rule_defs
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

-- Before a rule's row is locked to drop it, disable it or change what it
-- watches: the tables that the rule alone watches, whose herald_watch
-- trigger the change drops (DROP TRIGGER takes ACCESS EXCLUSIVE), locked
-- first, in the order of their oids.  An evaluation of the rule holds the
-- tables its metric reads, then writes the rule's instances (whose key
-- refers to the rule's row): the row first and a table second would
-- deadlock with it.  So the change waits for the evaluation under way, and
-- an evaluation that starts meanwhile waits for the change.
CREATE OR REPLACE FUNCTION herald._lock_watched(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tbl regclass;
BEGIN
    FOR v_tbl IN
        SELECT DISTINCT t
          FROM herald.rule_defs r, unnest(r.watch) AS t
         WHERE r.name = _lock_watched.name AND r.kind = 'threshold' AND r.enabled
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t)
           AND NOT EXISTS (SELECT 1 FROM herald.rule_defs o
                            WHERE o.id <> r.id AND o.kind = 'threshold' AND o.enabled
                              AND t = ANY (o.watch))
         ORDER BY t
    LOOP
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_tbl);
    END LOOP;
END;
$$;

-- Sync the triggers of every table a rule uses.
CREATE OR REPLACE FUNCTION herald._sync_rule_triggers(r herald.rule_defs) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT herald._sync_triggers(t)
      FROM (SELECT DISTINCT t FROM unnest(r.on_table || coalesce(r.watch, '{}')) AS t
             WHERE t IS NOT NULL) AS tables;
END;

-- Look a rule up by name, with a clear error when it does not exist.
CREATE OR REPLACE FUNCTION herald._rule(name text) RETURNS herald.rule_defs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs;
BEGIN
    SELECT * INTO v_rule FROM herald.rule_defs r WHERE r.name = _rule.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule "%" does not exist', left(_rule.name, 200)
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN v_rule;
END;
$$;

CREATE OR REPLACE FUNCTION herald.drop_rule(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs;
BEGIN
    PERFORM herald._lock_watched(drop_rule.name);
    v_rule := herald._own_rule(drop_rule.name, 'drop');
    -- the history stays, readable by the owner (herald._all_rules), until
    -- retention purges it; the definition, channels, silences and
    -- instances go
    INSERT INTO herald.dropped_rules (id, name, kind, owner, created_at, dropped_by)
    VALUES (v_rule.id, v_rule.name, v_rule.kind, v_rule.owner, v_rule.created_at,
            herald._invoker());
    DELETE FROM herald.rule_defs r WHERE r.id = v_rule.id;
    PERFORM herald._sync_rule_triggers(v_rule);
END;
$$;
COMMENT ON FUNCTION herald.drop_rule(text) IS 'Drop a rule; its history (events, deliveries, evaluations, changes, decisions) stays until retention purges it';

-- The parameters a declaration takes, per kind, as alter_rule() changes
-- them (name and channels apply to both).
CREATE OR REPLACE FUNCTION herald._rule_parameters(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE
RETURN CASE kind
    WHEN 'row' THEN ARRAY['on_table', 'operations', 'condition', 'message', 'followup_after',
                          'followup_every', 'choices', 'announce_decisions', 'facts', 'messages']
    ELSE ARRAY['metric', 'op', 'threshold', 'watch', 'every', 'message', 'warning_threshold',
               'recover_threshold', 'pending_for', 'repeat_every', 'min_interval', 'no_data',
               'query_timeout', 'followup_after', 'followup_every', 'meeting', 'choices',
               'announce_decisions', 'followup_on_resolve', 'messages']
END;

-- herald.alter_rule() proper; search_path is the caller's, which a new
-- metric is checked and run with.
CREATE OR REPLACE FUNCTION herald._alter_rule(
    name              text,
    new_name          text,
    channels          text[],
    message           text,
    on_table          regclass,
    operations        text[],
    condition         text,
    metric            text,
    op                text,
    threshold         numeric,
    watch             regclass[],
    every             interval,
    warning_threshold numeric,
    recover_threshold numeric,
    pending_for       interval,
    repeat_every      interval,
    min_interval      interval,
    no_data           text,
    query_timeout     interval,
    followup_after    interval,
    followup_every    interval,
    meeting           interval,
    choices           text[],
    announce_decisions boolean,
    messages          jsonb,
    reset             text[],
    search_path       text,
    followup_on_resolve text,
    facts             text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old herald.rule_defs;
    v_new herald.rule_defs;
    v_by regrole := herald._invoker();
    v_given jsonb;
    v_param text;
    v_channels text[];
    v_old_channels text[];
    v_new_ids integer[];
    v_changes jsonb := '{}';
BEGIN
    IF _alter_rule.watch IS NOT NULL THEN
        PERFORM herald._lock_watched(_alter_rule.name);
    END IF;
    v_old := herald._own_rule(_alter_rule.name, 'alter');
    IF v_old.table_dropped_at IS NOT NULL THEN
        RAISE EXCEPTION 'cannot alter rule "%": a table it uses was dropped', _alter_rule.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The table was dropped at %s; the rule was disabled then.',
                                  v_old.table_dropped_at),
                  HINT = 'Drop the rule, and declare a new one on the table that replaces it.';
    END IF;

    -- the parameters given (not NULL), each of which must be one this
    -- kind of rule takes
    v_given := jsonb_strip_nulls(jsonb_build_object(
        'on_table', _alter_rule.on_table, 'operations', _alter_rule.operations,
        'condition', _alter_rule.condition, 'metric', _alter_rule.metric,
        'op', _alter_rule.op, 'threshold', _alter_rule.threshold, 'watch', _alter_rule.watch,
        'every', _alter_rule.every, 'warning_threshold', _alter_rule.warning_threshold,
        'recover_threshold', _alter_rule.recover_threshold,
        'pending_for', _alter_rule.pending_for, 'repeat_every', _alter_rule.repeat_every,
        'min_interval', _alter_rule.min_interval, 'no_data', _alter_rule.no_data,
        'query_timeout', _alter_rule.query_timeout, 'meeting', _alter_rule.meeting,
        'followup_on_resolve', _alter_rule.followup_on_resolve, 'facts', _alter_rule.facts));
    FOR v_param IN SELECT k FROM jsonb_object_keys(v_given) k ORDER BY k LOOP
        IF NOT v_param = ANY (herald._rule_parameters(v_old.kind)) THEN
            RAISE EXCEPTION '% does not apply to a % rule', v_param, v_old.kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('A %s rule takes %s.', v_old.kind,
                                    array_to_string(herald._rule_parameters(v_old.kind), ', '));
        END IF;
    END LOOP;

    v_new := v_old;
    v_new.on_table := coalesce(_alter_rule.on_table, v_old.on_table);
    v_new.operations := coalesce(_alter_rule.operations, v_old.operations);
    v_new.condition := coalesce(_alter_rule.condition, v_old.condition);
    v_new.message := coalesce(_alter_rule.message, v_old.message);
    v_new.messages := coalesce(_alter_rule.messages, v_old.messages);
    v_new.metric := coalesce(_alter_rule.metric, v_old.metric);
    IF _alter_rule.metric IS NOT NULL THEN
        v_new.search_path := _alter_rule.search_path;
    END IF;
    v_new.op := coalesce(_alter_rule.op, v_old.op);
    v_new.threshold := coalesce(_alter_rule.threshold, v_old.threshold);
    v_new.watch := coalesce(_alter_rule.watch, v_old.watch);
    v_new.every := coalesce(_alter_rule.every, v_old.every);
    v_new.warning_threshold := coalesce(_alter_rule.warning_threshold, v_old.warning_threshold);
    v_new.recover_threshold := coalesce(_alter_rule.recover_threshold, v_old.recover_threshold);
    v_new.pending_for := coalesce(_alter_rule.pending_for, v_old.pending_for);
    v_new.repeat_every := coalesce(_alter_rule.repeat_every, v_old.repeat_every);
    v_new.min_interval := coalesce(_alter_rule.min_interval, v_old.min_interval);
    v_new.no_data := coalesce(_alter_rule.no_data, v_old.no_data);
    v_new.query_timeout := coalesce(_alter_rule.query_timeout, v_old.query_timeout);
    v_new.followup_after := coalesce(_alter_rule.followup_after, v_old.followup_after);
    v_new.followup_every := coalesce(_alter_rule.followup_every, v_old.followup_every);
    v_new.meeting := coalesce(_alter_rule.meeting, v_old.meeting);
    v_new.choices := coalesce(_alter_rule.choices, v_old.choices);
    v_new.announce_decisions := coalesce(_alter_rule.announce_decisions, v_old.announce_decisions);
    v_new.followup_on_resolve := coalesce(_alter_rule.followup_on_resolve, v_old.followup_on_resolve);
    v_new.facts := coalesce(_alter_rule.facts, v_old.facts);

    -- reset: back to what a declaration without the parameter has
    FOREACH v_param IN ARRAY coalesce(_alter_rule.reset, '{}') LOOP
        IF v_param IS NULL OR NOT v_param = ANY (herald._rule_parameters(v_old.kind)) THEN
            RAISE EXCEPTION 'cannot reset "%": a % rule has no such parameter',
                            left(coalesce(v_param, 'NULL'), 100), v_old.kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('A %s rule takes %s.', v_old.kind,
                                    array_to_string(herald._rule_parameters(v_old.kind), ', '));
        END IF;
        IF v_given ? v_param
           OR (v_param = 'message' AND _alter_rule.message IS NOT NULL)
           OR (v_param = 'messages' AND _alter_rule.messages IS NOT NULL)
           OR (v_param = 'followup_after' AND _alter_rule.followup_after IS NOT NULL)
           OR (v_param = 'followup_every' AND _alter_rule.followup_every IS NOT NULL)
           OR (v_param = 'choices' AND _alter_rule.choices IS NOT NULL)
           OR (v_param = 'announce_decisions' AND _alter_rule.announce_decisions IS NOT NULL) THEN
            RAISE EXCEPTION '% is both given and reset', v_param
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        CASE v_param
            WHEN 'condition' THEN v_new.condition := NULL;
            WHEN 'message' THEN v_new.message := NULL;
            WHEN 'messages' THEN v_new.messages := NULL;
            WHEN 'watch' THEN v_new.watch := NULL;
            WHEN 'every' THEN v_new.every := NULL;
            WHEN 'warning_threshold' THEN v_new.warning_threshold := NULL;
            WHEN 'recover_threshold' THEN v_new.recover_threshold := NULL;
            WHEN 'pending_for' THEN v_new.pending_for := NULL;
            WHEN 'repeat_every' THEN v_new.repeat_every := NULL;
            WHEN 'min_interval' THEN v_new.min_interval := '0';
            WHEN 'no_data' THEN v_new.no_data := 'ok';
            WHEN 'query_timeout' THEN v_new.query_timeout := '5 seconds';
            WHEN 'followup_after' THEN v_new.followup_after := NULL;
            WHEN 'followup_every' THEN v_new.followup_every := NULL;
            WHEN 'meeting' THEN v_new.meeting := NULL;
            WHEN 'choices' THEN v_new.choices := NULL;
            WHEN 'announce_decisions' THEN v_new.announce_decisions := true;
            WHEN 'followup_on_resolve' THEN v_new.followup_on_resolve := 'stop';
            WHEN 'facts' THEN v_new.facts := NULL;
            ELSE
                RAISE EXCEPTION 'cannot reset %: a % rule needs one', v_param, v_old.kind
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Give a new %s instead.', v_param);
        END CASE;
    END LOOP;

    SELECT coalesce(array_agg(c.name ORDER BY c.name), '{}') INTO v_old_channels
      FROM herald.rule_channels rc JOIN herald.channel_defs c ON c.id = rc.channel_id
     WHERE rc.rule_id = v_old.id;
    v_channels := coalesce(_alter_rule.channels, v_old_channels);

    -- checked as a declaration of the owner's would be, whoever alters
    PERFORM herald._act_for(v_old.owner);
    IF _alter_rule.new_name IS NOT NULL AND _alter_rule.new_name IS DISTINCT FROM v_old.name THEN
        PERFORM herald._check_rule_name(_alter_rule.new_name);
        v_new.name := _alter_rule.new_name;
    END IF;
    IF v_old.kind = 'row' THEN
        v_new := herald._check_row_rule(v_new, v_channels);
    ELSE
        v_new := herald._check_threshold_rule(v_new, v_channels);
    END IF;
    v_new_ids := herald._channel_ids(v_channels);

    -- what changed, parameter by parameter
    SELECT coalesce(jsonb_object_agg(p, jsonb_build_object('old', o -> p, 'new', n -> p)), '{}')
      INTO v_changes
      FROM unnest('{name}' || herald._rule_parameters(v_old.kind)) AS p,
           to_jsonb(v_old) AS o, to_jsonb(v_new) AS n
     WHERE (o -> p) IS DISTINCT FROM (n -> p);
    IF ARRAY(SELECT c.name FROM herald.channel_defs c WHERE c.id = ANY (v_new_ids) ORDER BY c.name)
       IS DISTINCT FROM v_old_channels THEN
        v_changes := v_changes || jsonb_build_object('channels', jsonb_build_object(
            'old', to_jsonb(v_old_channels),
            'new', to_jsonb(ARRAY(SELECT c.name FROM herald.channel_defs c
                                   WHERE c.id = ANY (v_new_ids) ORDER BY c.name))));
    END IF;
    IF v_changes = '{}' THEN
        RETURN;
    END IF;

    UPDATE herald.rule_defs r
       SET name = v_new.name, on_table = v_new.on_table, operations = v_new.operations,
           condition = v_new.condition, message = v_new.message, messages = v_new.messages,
           metric = v_new.metric,
           grouped = v_new.grouped, search_path = v_new.search_path, op = v_new.op,
           threshold = v_new.threshold, warning_threshold = v_new.warning_threshold,
           recover_threshold = v_new.recover_threshold, watch = v_new.watch,
           every = v_new.every, pending_for = v_new.pending_for,
           repeat_every = v_new.repeat_every, min_interval = v_new.min_interval,
           no_data = v_new.no_data, query_timeout = v_new.query_timeout,
           followup_after = v_new.followup_after, followup_every = v_new.followup_every,
           meeting = v_new.meeting, choices = v_new.choices,
           announce_decisions = v_new.announce_decisions, facts = v_new.facts,
           followup_on_resolve = v_new.followup_on_resolve, altered_at = now()
     WHERE r.id = v_old.id;
    DELETE FROM herald.rule_channels rc
     WHERE rc.rule_id = v_old.id AND NOT rc.channel_id = ANY (v_new_ids);
    INSERT INTO herald.rule_channels (rule_id, channel_id)
    SELECT v_old.id, unnest(v_new_ids)
    ON CONFLICT DO NOTHING;

    INSERT INTO herald.rule_change_log (rule_id, changed_by, changes, open_event_ids)
    VALUES (v_old.id, v_by, v_changes,
            ARRAY(SELECT i.fired_event_id FROM herald.rule_instances i
                   WHERE i.rule_id = v_old.id AND i.fired_event_id IS NOT NULL
                   ORDER BY i.fired_event_id));

    -- the scheduler sees altered_at change (the rules_changed trigger has it
    -- reload the rules) and evaluates a threshold rule again at once, with
    -- its new definition: each instance moves (once) if the new thresholds
    -- say so
    PERFORM herald._sync_rule_triggers(v_old);
    PERFORM herald._sync_rule_triggers(v_new);
END;
$$;

CREATE OR REPLACE FUNCTION herald.alter_rule(
    name              text,
    new_name          text DEFAULT NULL,
    channels          text[] DEFAULT NULL,
    message           text DEFAULT NULL,
    on_table          regclass DEFAULT NULL,
    operations        text[] DEFAULT NULL,
    condition         text DEFAULT NULL,
    metric            text DEFAULT NULL,
    op                text DEFAULT NULL,
    threshold         numeric DEFAULT NULL,
    watch             regclass[] DEFAULT NULL,
    every             interval DEFAULT NULL,
    warning_threshold numeric DEFAULT NULL,
    recover_threshold numeric DEFAULT NULL,
    pending_for       interval DEFAULT NULL,
    repeat_every      interval DEFAULT NULL,
    min_interval      interval DEFAULT NULL,
    no_data           text DEFAULT NULL,
    query_timeout     interval DEFAULT NULL,
    followup_after    interval DEFAULT NULL,
    followup_every    interval DEFAULT NULL,
    meeting           interval DEFAULT NULL,
    choices           text[] DEFAULT NULL,
    announce_decisions boolean DEFAULT NULL,
    reset             text[] DEFAULT NULL,
    followup_on_resolve text DEFAULT NULL,
    facts             text[] DEFAULT NULL,
    messages          jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql
BEGIN ATOMIC
    SELECT herald._alter_rule(name, new_name, channels, message, on_table, operations, condition,
                              metric, op, threshold, watch, every, warning_threshold,
                              recover_threshold, pending_for, repeat_every, min_interval, no_data,
                              query_timeout, followup_after, followup_every, meeting, choices,
                              announce_decisions, messages, reset,
                              pg_catalog.current_setting('search_path'), followup_on_resolve, facts);
END;
COMMENT ON FUNCTION herald.alter_rule(text, text, text[], text, regclass, text[], text, text, text, numeric, regclass[], interval, numeric, numeric, interval, interval, interval, text, interval, interval, interval, interval, text[], boolean, text[], text, text[], jsonb) IS
    'Change a rule in place (NULL: unchanged; reset lists parameters to set back to their default), keeping its id, state and history; every change is recorded';

CREATE OR REPLACE FUNCTION herald._set_rule_enabled(name text, enabled boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs;
BEGIN
    IF NOT _set_rule_enabled.enabled THEN
        PERFORM herald._lock_watched(_set_rule_enabled.name);
    END IF;
    v_rule := herald._own_rule(_set_rule_enabled.name,
                               CASE WHEN enabled THEN 'enable' ELSE 'disable' END);
    IF _set_rule_enabled.enabled AND v_rule.table_dropped_at IS NOT NULL THEN
        RAISE EXCEPTION 'cannot enable rule "%": a table it uses was dropped', _set_rule_enabled.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The table was dropped at %s; the rule was disabled then.',
                                  v_rule.table_dropped_at),
                  HINT = 'Drop the rule, and declare a new one on the table that replaces it.';
    END IF;
    UPDATE herald.rule_defs r SET enabled = _set_rule_enabled.enabled WHERE r.id = v_rule.id;
    PERFORM herald._sync_rule_triggers(v_rule);
END;
$$;

CREATE OR REPLACE FUNCTION herald.enable_rule(name text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC
        SELECT herald._set_rule_enabled(name, true);
    END;
COMMENT ON FUNCTION herald.enable_rule(text) IS 'Enable a rule';

CREATE OR REPLACE FUNCTION herald.disable_rule(name text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC
        SELECT herald._set_rule_enabled(name, false);
    END;
COMMENT ON FUNCTION herald.disable_rule(text) IS 'Disable a rule: it captures nothing until enabled again';

-- Called by herald._on_sql_drop(), the sql_drop event trigger, with the
-- tables a command dropped (oids and names, in the same order): every rule
-- that uses one of them (its table, a table it watches) is disabled for
-- good, its channels receive a rule.error event saying why, and the
-- triggers of the tables it used that remain are brought in line.  The
-- rule and its history stay until drop_rule().
CREATE OR REPLACE FUNCTION herald._tables_dropped(tables oid[], names text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r herald.rule_defs;
    v_table text;
BEGIN
    FOR r IN SELECT * FROM herald.rule_defs x
              WHERE x.table_dropped_at IS NULL
                AND (x.on_table::oid = ANY (tables) OR x.watch::oid[] && tables)
              ORDER BY x.id
              FOR UPDATE
    LOOP
        SELECT names[i] INTO v_table
          FROM generate_subscripts(tables, 1) AS i
         WHERE tables[i] = ANY ((r.on_table || coalesce(r.watch, '{}'))::oid[])
         ORDER BY i LIMIT 1;
        UPDATE herald.rule_defs x SET enabled = false, table_dropped_at = now() WHERE x.id = r.id;
        PERFORM herald._emit(r.id, 'rule.error',
                             jsonb_build_object('table', v_table,
                                                'error', format('table %s was dropped: the rule is disabled', v_table)));
        PERFORM herald._sync_triggers(t)
           FROM (SELECT DISTINCT t FROM unnest(r.on_table || coalesce(r.watch, '{}')) AS t
                  WHERE t IS NOT NULL AND NOT t::oid = ANY (tables)) AS remaining;
    END LOOP;
END;
$$;

-- Deliveries ------------------------------------------------------------------

CREATE OR REPLACE FUNCTION herald.redeliver(delivery_id bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status text;
    v_channel_id integer;
    v_channel record;
BEGIN
    PERFORM herald._require_admin('redeliver');
    -- a delivery that failed once (or was held back, or redelivered) has
    -- its queue row; any other is pending in the event log, or delivered
    -- at its first try
    SELECT d.status, d.channel_id INTO v_status, v_channel_id FROM herald.delivery_queue d
     WHERE d.id = redeliver.delivery_id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT d.status, d.channel_id INTO v_status, v_channel_id FROM herald._deliveries d
         WHERE d.event_id = herald._delivery_event(redeliver.delivery_id)
           AND d.id = redeliver.delivery_id;
    END IF;
    SELECT c.name, c.enabled INTO v_channel FROM herald.channel_defs c WHERE c.id = v_channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', redeliver.delivery_id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF v_status = 'delivered' THEN
        RAISE EXCEPTION 'delivery % was already delivered', redeliver.delivery_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT v_channel.enabled THEN
        RAISE EXCEPTION 'channel "%" is disabled', v_channel.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Enable the channel before redelivering to it.';
    END IF;
    -- one pending in the event log is due already, with its whole budget
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
CREATE OR REPLACE VIEW herald.rules WITH (security_barrier) AS
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
       r.created_at,
       -- the self-check: how evaluations go, and what comes next
       t.last_duration_ms,
       t.avg_duration_ms,
       t.p95_duration_ms,
       n.at AS next_evaluation_at,
       concat_ws('; ', n.why,
                 CASE WHEN s.until IS NOT NULL AND r.enabled
                      THEN 'silenced: its events are recorded, not delivered' END)
           AS next_evaluation_reason,
       r.facts,
       r.messages
  FROM herald.rule_defs r
  LEFT JOIN herald.rule_instances i ON i.rule_id = r.id
  LEFT JOIN LATERAL (
        SELECT max(x.until) AS until FROM herald.silence_defs x
         WHERE (x.rule_id = r.id OR x.rule_id IS NULL) AND x.ended_at IS NULL
           AND now() >= x.starts_at AND now() < x.until) s ON true
  -- the instance's last 20 evaluations, newest first, through the index
  -- evaluation_log_rule: a constant cost per row whatever the history
  LEFT JOIN LATERAL (
        SELECT (array_agg(l.duration_ms ORDER BY l.evaluated_at DESC))[1] AS last_duration_ms,
               round(avg(l.duration_ms)::numeric, 3)::double precision AS avg_duration_ms,
               round((percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_ms))::numeric, 3)
                   ::double precision AS p95_duration_ms
          FROM (SELECT x.duration_ms, x.evaluated_at FROM herald.evaluation_log x
                 WHERE x.rule_id = r.id AND x.key = i.key
                 ORDER BY x.evaluated_at DESC LIMIT 20) l
        HAVING count(*) > 0) t ON true
  -- when the scheduler evaluates the instance next (its schedule after the
  -- last evaluation, or its timer: the end of a pending period, a reminder),
  -- and what else makes it evaluate (a commit to a watched table)
  CROSS JOIN LATERAL (
        SELECT CASE WHEN r.kind = 'threshold' AND r.enabled AND i.last_evaluated_at IS NOT NULL
                    THEN least(i.last_evaluated_at + r.every, i.next_check_at) END AS at,
               CASE WHEN r.table_dropped_at IS NOT NULL
                    THEN 'disabled: a table it uses was dropped'
                    WHEN NOT r.enabled THEN 'disabled'
                    WHEN r.kind = 'row'
                    THEN 'on each ' || array_to_string(r.operations, ', ') || ' on ' || r.on_table::text
                    WHEN i.last_evaluated_at IS NULL THEN 'at once: not evaluated yet'
                    ELSE concat_ws('; ',
                        CASE WHEN i.next_check_at IS NULL THEN NULL
                             WHEN i.state = 'pending' THEN 'end of the pending period'
                             ELSE 'reminder due' END,
                        'every ' || r.every::text,
                        'on change of ' || array_to_string(r.watch::text[], ', ')
                            || CASE WHEN r.min_interval > '0' THEN ', at most every ' || r.min_interval::text
                                    ELSE '' END)
               END AS why) n
 WHERE herald._may_see(r.owner);

-- Is this database served?  One row: the database, whether pg_herald's
-- workers serve it (and why not), the database they serve, how many run,
-- the library's version and the installation's.
CREATE OR REPLACE VIEW herald.status AS
SELECT s.database,
       s.served,
       s.reason,
       s.served_database,
       s.delivery_workers,
       s.scheduler,
       s.library_version,
       e.extversion AS installed_version
  FROM herald._status() s
  CROSS JOIN pg_catalog.pg_extension e
 WHERE e.extname = 'pg_herald';

-- A URL without what may be a credential: its user information (user
-- name and password: an API key is often the user name), its path and its
-- query (Slack and Teams put their tokens in the path, Google Chat in the
-- query).  The user information runs to the authority's last '@'.
CREATE OR REPLACE FUNCTION herald._mask_url(url text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN url !~ '^[A-Za-z][A-Za-z0-9+.-]*://' THEN '***' ELSE
       regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*@)?([^/?#]*)(.*)$',
                      '\1' || CASE WHEN url ~ '^[^/]*//[^/?#]*@' THEN '***@' ELSE '' END
                           || '\3' || CASE WHEN url ~ '^[^/]*//[^/?#]*[/?#].' THEN '/***' ELSE '' END) END;

-- Channels as everyone but herald_admin sees them: no secret, no token.
CREATE OR REPLACE VIEW herald.channels AS
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
       c.created_by,
       c.timezone
  FROM herald.channel_defs c;

-- Every rule that has history: the declared ones and the dropped ones
-- (whose history stays readable by their owner until retention purges it).
CREATE OR REPLACE VIEW herald._all_rules AS
SELECT r.id, r.name, r.kind, r.owner FROM herald.rule_defs r
UNION ALL
SELECT d.id, d.name, d.kind, d.owner FROM herald.dropped_rules d;

CREATE OR REPLACE VIEW herald.events WITH (security_barrier) AS
SELECT e.id, e.type, e.rule, e.created_at, e.payload, e.silenced_by IS NOT NULL AS silenced
  FROM herald.event_log e
  LEFT JOIN herald._all_rules r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

CREATE OR REPLACE VIEW herald.evaluations WITH (security_barrier) AS
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
  JOIN herald._all_rules r ON r.id = l.rule_id
 WHERE herald._may_see(r.owner);

-- Every change made with herald.alter_rule(), of the rules still declared
-- and of those dropped.
CREATE OR REPLACE VIEW herald.rule_changes WITH (security_barrier) AS
SELECT x.id, r.name AS rule, x.changed_at, x.changed_by, x.changes
  FROM herald.rule_change_log x
  JOIN herald._all_rules r ON r.id = x.rule_id
 WHERE herald._may_see(r.owner);

CREATE OR REPLACE VIEW herald.silences WITH (security_barrier) AS
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

-- Every delivery: one per event and channel the event names that still
-- exists.  Its queue row, if any, tells how it stands; else it was
-- delivered at its first try when it has an attempt, and is pending
-- while no delivery worker read its event.  (A delivery without a queue
-- row or an attempt whose event a worker read had its record purged: it
-- is gone, as in the queue it was.)  Not for authors: herald.deliveries
-- shows them their own.
CREATE OR REPLACE VIEW herald._deliveries AS
SELECT herald._delivery_id(e.id, c.id) AS id,
       e.id AS event_id,
       c.id AS channel_id,
       c.name AS channel,
       e.rule_id,
       CASE WHEN q.id IS NOT NULL THEN q.status
            WHEN a.attempts IS NOT NULL THEN 'delivered' ELSE 'pending' END AS status,
       coalesce(q.attempts, a.attempts, 0) AS attempts,
       CASE WHEN q.id IS NULL THEN a.http_status ELSE q.last_status END AS last_status,
       CASE WHEN q.id IS NULL THEN a.error ELSE q.last_error END AS last_error,
       coalesce(q.status = 'pending' AND q.leased_by IS NOT NULL, false) AS in_flight,
       CASE WHEN q.id IS NULL THEN CASE WHEN a.attempts IS NULL THEN e.created_at END
            WHEN q.status = 'pending' THEN q.next_attempt_at END AS next_attempt_at,
       coalesce(q.created_at, e.created_at) AS created_at,
       CASE WHEN q.id IS NULL
            THEN a.started_at + coalesce(a.latency_ms, 0) * interval '1 millisecond'
            ELSE q.finished_at END AS finished_at
  FROM herald.event_log e
  JOIN herald.channel_defs c ON c.id = ANY (e.channel_ids)
  LEFT JOIN herald.delivery_queue q ON q.id = herald._delivery_id(e.id, c.id)
  -- without a queue row: its attempt (a retry has one)
  LEFT JOIN LATERAL (
        SELECT count(*) OVER ()::integer AS attempts, t.http_status, t.error, t.started_at,
               t.latency_ms
          FROM herald.attempt_log t
         WHERE q.id IS NULL AND t.delivery_id = herald._delivery_id(e.id, c.id)
         ORDER BY t.attempt DESC, t.started_at DESC
         LIMIT 1) a ON true
 WHERE q.id IS NOT NULL OR a.attempts IS NOT NULL
    OR NOT EXISTS (SELECT 1 FROM herald.delivery_cursors k
                    WHERE k.workers > 0 AND e.id % k.workers = k.slot AND e.id <= k.position);

CREATE OR REPLACE VIEW herald.deliveries WITH (security_barrier) AS
SELECT d.id,
       d.event_id,
       d.channel,
       d.status,
       d.attempts,
       d.last_status,
       d.last_error,
       d.in_flight,
       d.next_attempt_at,
       herald.webhook_id(d.id) AS webhook_id,
       d.created_at,
       d.finished_at
  FROM herald._deliveries d
  LEFT JOIN herald._all_rules r ON r.id = d.rule_id
 WHERE herald._may_see(r.owner);

CREATE OR REPLACE VIEW herald.attempts WITH (security_barrier) AS
SELECT a.delivery_id,
       a.attempt,
       a.started_at,
       a.latency_ms,
       a.http_status,
       a.error,
       a.response
  FROM herald.attempt_log a
  JOIN herald.event_log e ON e.id = herald._delivery_event(a.delivery_id)
  LEFT JOIN herald._all_rules r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

-- One row per channel: its deliveries now, and the attempts of the last hour.
CREATE OR REPLACE VIEW herald.channel_health AS
SELECT c.name AS channel,
       c.kind,
       c.enabled,
       coalesce(q.pending, 0) AS pending,
       coalesce(q.in_flight, 0) AS in_flight,
       coalesce(q.delivered, 0) AS delivered,
       coalesce(q.dead, 0) AS dead,
       a.attempts AS attempts_1h,
       a.success_rate AS success_rate_1h,
       a.latency_p50_ms,
       a.latency_p99_ms,
       q.oldest_pending_age
  FROM herald.channel_defs c
  LEFT JOIN (
        SELECT d.channel_id,
               count(*) FILTER (WHERE d.status = 'pending') AS pending,
               count(*) FILTER (WHERE d.in_flight) AS in_flight,
               count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE d.status = 'dead') AS dead,
               now() - min(d.created_at) FILTER (WHERE d.status = 'pending') AS oldest_pending_age
          FROM herald._deliveries d
         GROUP BY d.channel_id) q ON q.channel_id = c.id
  CROSS JOIN LATERAL (
        -- every attempt counts: an attempt succeeded when it recorded no
        -- error (a 2xx, an SMTP acceptance, a notification); refusals,
        -- timeouts and connection errors have no HTTP status but count
        SELECT count(*) AS attempts,
               round(avg((t.error IS NULL)::int), 4) AS success_rate,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY t.latency_ms)::numeric, 3) AS latency_p50_ms,
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY t.latency_ms)::numeric, 3) AS latency_p99_ms
          FROM herald.attempt_log t
         WHERE t.channel_id = c.id AND t.started_at > now() - interval '1 hour') a;
