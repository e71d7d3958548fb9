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
-- herald_admin: the API functions run as the extension's owner on behalf of
-- their caller, herald._invoker() (src/api.c), and check what it may do.
-- No one but the extension's owner can create a trigger or a policy on
-- them.  Internal functions (herald._*) are the owner's, but for the pure
-- helpers the views call (_mask_url, _may_see, _delivery_id,
-- _delivery_event) and _status.
-------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'herald_author') THEN
        CREATE ROLE herald_author NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'herald_admin') THEN
        CREATE ROLE herald_admin NOLOGIN;
    END IF;
    -- the HTTP worker's role: it records decisions through the functions
    -- granted to it below, and may do nothing else
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'herald_http') THEN
        CREATE ROLE herald_http NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('herald_admin', 'herald_author', 'MEMBER') THEN
        GRANT herald_author TO herald_admin;
    END IF;
END;
$$;

-- From nothing, so that an upgrade ends with the same privileges as a fresh
-- install.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA herald FROM PUBLIC, herald_author, herald_admin, herald_http;
REVOKE ALL ON ALL TABLES IN SCHEMA herald FROM PUBLIC, herald_author, herald_admin, herald_http;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA herald FROM PUBLIC, herald_author, herald_admin, herald_http;

GRANT USAGE ON SCHEMA herald TO herald_author, herald_admin;

GRANT SELECT ON herald.rules, herald.events, herald.deliveries, herald.attempts,
                herald.evaluations, herald.silences, herald.channels, herald.channel_health,
                herald.decisions, herald.timeline, herald.status, herald.rule_changes
    TO herald_author;

GRANT EXECUTE ON FUNCTION
    herald.on_change(text, regclass, text[], text[], text, text, interval, interval, text[], boolean,
                     text[], jsonb),
    herald.on_threshold(text, text, text, numeric, text[], regclass[], interval, text, numeric,
                        numeric, interval, interval, interval, text, interval, interval, interval,
                        interval, text[], boolean, text, jsonb),
    herald.preview(text),
    herald.silence(text, timestamptz, text),
    herald.unsilence(text),
    herald.drop_rule(text),
    herald.alter_rule(text, text, text[], text, regclass, text[], text, text, text, numeric,
                      regclass[], interval, numeric, numeric, interval, interval, interval, text,
                      interval, interval, interval, interval, text[], boolean, text[], text, text[],
                      jsonb),
    herald.enable_rule(text),
    herald.disable_rule(text),
    herald.flush(interval),
    herald.acknowledge(bigint, text),
    herald.decide(bigint, text, text, text, text, text, date),
    herald.decision_report(timestamptz, timestamptz),
    herald.webhook_id(bigint),
    herald.webhook_signature(text, bigint, text, text),
    herald.generate_secret(),
    herald._mask_url(text),
    herald._status(),
    herald._may_see(regrole, regrole),
    herald._delivery_id(bigint, integer),
    herald._delivery_event(bigint)
    TO herald_author;

GRANT SELECT ON ALL TABLES IN SCHEMA herald TO herald_admin;
GRANT EXECUTE ON FUNCTION
    herald.create_channel(text, text, text, text, integer, interval, interval, jsonb,
                          double precision, integer, text[], text, text, text, text),
    herald.alter_channel(text, text, text, integer, interval, interval, jsonb,
                         double precision, integer, text[], text, text, boolean, interval, text,
                         text),
    herald.drop_channel(text),
    herald.test_channel(text),
    herald.redeliver(bigint),
    herald.rotate_link_key(boolean)
    TO herald_admin;
-- the keys that sign links are the workers' alone
REVOKE ALL ON herald.link_keys FROM herald_admin;

GRANT USAGE ON SCHEMA herald TO herald_http;
GRANT EXECUTE ON FUNCTION
    herald._link_check(text),
    herald._link_page(text, bigint),
    herald._link_decide(text, text, integer, text, text, text, text, text),
    herald._slack_verify(text, bytea, text),
    herald._slack_decide(text, text, integer[], text, text, text, text)
    TO herald_http;

-- Installed where no worker serves: say so now.
SELECT herald._warn_unserved('Rules and channels declared here record events that are never delivered.');
