-- The event an answer is about: its episode's first event.  A reminder and
-- an escalation stand for their rule.fired event, a follow-up and an
-- announcement for the event they are about.  NULL when there is none.
CREATE OR REPLACE FUNCTION herald._episode(event_id bigint) RETURNS herald.event_log
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log;
    v_root bigint;
BEGIN
    SELECT x.* INTO e FROM herald.event_log x WHERE x.id = _episode.event_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- at most two steps: a follow-up about an escalation stands for the
    -- escalation, which stands for its rule.fired event
    FOR i IN 1..2 LOOP
        v_root := CASE WHEN e.type IN ('rule.reminder', 'rule.escalated')
                       THEN (e.payload ->> 'fired_event_id')::bigint
                       WHEN e.type IN ('decision.followup', 'decision.recorded')
                       THEN e.about_event_id END;
        EXIT WHEN v_root IS NULL OR v_root = e.id;
        SELECT x.* INTO e FROM herald.event_log x WHERE x.id = v_root;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END LOOP;
    RETURN e;
END;
$$;

-- The event, with a clear error when there is none, or when the caller may
-- not answer it: the rule's owner (and its members) and herald_admin may.
CREATE OR REPLACE FUNCTION herald._event(event_id bigint) RETURNS herald.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log := herald._episode(_event.event_id);
    v_owner regrole;
BEGIN
    IF e.id IS NULL THEN
        RAISE EXCEPTION 'event % does not exist', coalesce(_event.event_id::text, 'NULL')
            USING ERRCODE = 'undefined_object',
                  HINT = 'Event ids are in herald.events and in every message pg_herald sends.';
    END IF;
    SELECT r.owner INTO v_owner FROM herald.rule_defs r WHERE r.id = e.rule_id;
    IF NOT herald._may_see(v_owner, herald._invoker()) THEN
        RAISE EXCEPTION 'permission denied to answer event %', _event.event_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = CASE WHEN v_owner IS NULL
                                THEN 'Only members of herald_admin may answer events without a rule.'
                                ELSE format('Only the owner of its rule (%s), the roles that are members of it, and members of herald_admin may answer it.', v_owner) END,
                  HINT = 'Ask the rule''s owner to grant you its role, or an administrator to record the answer.';
    END IF;
    RETURN e;
END;
$$;

-- The label of a message's action number: a rule's choices are 1..n;
-- without choices, 1 acknowledges and 2 records a decision.  NULL when the
-- rule no longer offers it.
CREATE OR REPLACE FUNCTION herald._action_label(choices text[], action integer) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN choices IS NULL
            THEN (ARRAY['Acknowledge', 'Record a decision'])[action]
            ELSE choices[action] END;

-- The id of a message's action number, as webhook payloads and Slack's
-- action_id ("herald-" + it) name it: choice-N for a rule's choices;
-- without choices, acknowledge (1) and decide (2).
CREATE OR REPLACE FUNCTION herald._action_id(choices text[], action integer) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN choices IS NOT NULL THEN 'choice-' || action
            WHEN action = 1 THEN 'acknowledge' ELSE 'decide' END;

-- Record an acknowledgement or a decision about an episode (e, its first
-- event), for every way one arrives: herald.acknowledge() and
-- herald.decide() (identified_by 'sql'), a decision page's form ('link')
-- and a Slack button ('slack').  Either stops the episode's reminders (a
-- rule with choices offers no acknowledgement: its answers are decisions);
-- a decision also stops its follow-ups.  Then decision.recorded goes to
-- the rule's channels (or, with announce_decisions off, to the Slack
-- channel whose message is updated only).  request_key makes a repeated
-- request record nothing: NULL is returned then.
CREATE OR REPLACE FUNCTION herald._record_decision(
    e herald.event_log, kind text, decision text, decided_by text, recorded_by name,
    identified_by text, choice text DEFAULT NULL, note text DEFAULT NULL,
    action text DEFAULT NULL, action_owner text DEFAULT NULL, action_due date DEFAULT NULL,
    actor_id text DEFAULT NULL, channel_id integer DEFAULT NULL,
    request_key text DEFAULT NULL, response_url text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r herald.rule_defs;
    d herald.decision_log;
    v_channel text;
BEGIN
    IF kind = 'decision' AND (decision IS NULL OR btrim(decision) = '') THEN
        RAISE EXCEPTION 'a decision must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what was decided, for example ''no action: seasonal peak''.';
    END IF;
    IF decided_by IS NULL OR btrim(decided_by) = '' THEN
        RAISE EXCEPTION 'decided_by must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM herald._check_range('action_due', action_due, '2000-01-01', '2999-12-31');
    INSERT INTO herald.decision_log AS x (event_id, kind, decision, action, note, decided_by,
                                          recorded_by, choice, identified_by, actor_id,
                                          channel_id, action_owner, action_due, request_key,
                                          response_url)
    VALUES (e.id, kind, nullif(btrim(decision), ''), nullif(btrim(action), ''),
            nullif(btrim(note), ''), left(decided_by, 200), recorded_by, choice, identified_by,
            actor_id, channel_id, nullif(btrim(action_owner), ''), action_due, request_key,
            response_url)
    ON CONFLICT ON CONSTRAINT decision_log_request_key_key DO NOTHING
    RETURNING x.* INTO d;
    IF d.id IS NULL THEN
        RETURN NULL;            -- this request was recorded already
    END IF;

    -- the threshold episode reminds no more
    UPDATE herald.rule_instances i
       SET acknowledged_at = coalesce(i.acknowledged_at, now()),
           next_check_at = CASE WHEN i.state = 'pending' THEN i.next_check_at END
     WHERE i.rule_id = e.rule_id AND i.firing_since IS NOT NULL
       AND i.fired_event_id = e.id;

    IF kind = 'decision' THEN
        -- the episode is decided: nothing more to ask about its first event
        -- or its escalations.  Clearing awaits_decision here (rather than
        -- leaving it to herald._send_followups() to notice) also locks
        -- those rows until this commits, so that a follow-up being sent
        -- meanwhile skips them, and one that started before rechecks them.
        UPDATE herald.event_log x SET awaits_decision = NULL
         WHERE x.id = e.id AND x.awaits_decision;
        IF e.type = 'rule.fired' THEN
            UPDATE herald.event_log x SET awaits_decision = NULL
             WHERE x.awaits_decision AND x.created_at >= e.created_at
               AND x.rule_id = e.rule_id AND x.type = 'rule.escalated'
               AND x.payload ->> 'fired_event_id' = e.id::text;
        END IF;
    END IF;

    SELECT x.* INTO r FROM herald.rule_defs x WHERE x.id = e.rule_id;
    IF r.id IS NOT NULL AND (r.announce_decisions OR response_url IS NOT NULL) THEN
        SELECT c.name INTO v_channel FROM herald.channel_defs c WHERE c.id = d.channel_id;
        PERFORM herald._emit(r.id, 'decision.recorded', jsonb_strip_nulls(jsonb_build_object(
                    'about_event_id', e.id,
                    'about_type', e.type,
                    'about_created_at', e.created_at,
                    'key', e.payload -> 'key',
                    'decision_id', d.id,
                    'kind', d.kind,
                    'choice', d.choice,
                    'decision', d.decision,
                    'note', d.note,
                    'action', d.action,
                    'action_owner', d.action_owner,
                    'action_due', d.action_due,
                    'decided_by', d.decided_by,
                    'identified_by', d.identified_by,
                    'decided_at', d.decided_at,
                    'channel', v_channel)),
                 e.id,
                 CASE WHEN NOT r.announce_decisions THEN ARRAY[d.channel_id] END);
    END IF;
    RETURN d.id;
END;
$$;

CREATE OR REPLACE FUNCTION herald.acknowledge(event_id bigint, note text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN herald._record_decision(herald._event(acknowledge.event_id), 'acknowledgement', NULL,
                                   herald._invoker()::text, herald._invoker()::text, 'sql',
                                   note => acknowledge.note);
END;
$$;
COMMENT ON FUNCTION herald.acknowledge(bigint, text) IS
    'Record that someone saw an event; a firing threshold episode stops reminding';

-- decision may be left NULL when a choice is given: the choice says it.
CREATE OR REPLACE FUNCTION herald.decide(event_id bigint, decision text, action text DEFAULT NULL,
                              decided_by text DEFAULT current_user, choice text DEFAULT NULL,
                              action_owner text DEFAULT NULL, action_due date DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log := herald._event(decide.event_id);
    v_choices text[];
BEGIN
    IF decide.choice IS NOT NULL THEN
        SELECT r.choices INTO v_choices FROM herald.rule_defs r WHERE r.id = e.rule_id;
        IF v_choices IS NULL OR NOT decide.choice = ANY (v_choices) THEN
            RAISE EXCEPTION 'rule "%" offers no choice "%"', e.rule, left(decide.choice, 100)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = CASE WHEN v_choices IS NULL THEN 'The rule was declared without choices.'
                                  ELSE format('Its choices are %s.', array_to_string(v_choices, ', ')) END;
        END IF;
    END IF;
    RETURN herald._record_decision(e, 'decision', coalesce(decide.decision, decide.choice),
                                   decide.decided_by, herald._invoker()::text, 'sql',
                                   choice => decide.choice, action => decide.action,
                                   action_owner => decide.action_owner,
                                   action_due => decide.action_due);
END;
$$;
COMMENT ON FUNCTION herald.decide(bigint, text, text, text, text, text, date) IS
    'Record what was decided about an event (several decisions per event are kept)';

-- Signed links (links.c) ---------------------------------------------------

CREATE OR REPLACE FUNCTION herald._link(key_id integer, key bytea, event_id bigint, action integer,
                                        channel_id integer, recipient text) RETURNS text
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_link_sql';
CREATE OR REPLACE FUNCTION herald._link_base() RETURNS text
    STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_link_base_sql';
-- Run by the HTTP worker's role, which may not read the keys itself.
CREATE OR REPLACE FUNCTION herald._link_check(token text,
    OUT status text, OUT key_id integer, OUT event_id bigint, OUT action integer,
    OUT channel_id integer, OUT recipient text, OUT expires_at timestamptz)
    STABLE SECURITY DEFINER LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'herald_link_check_sql';

-- A new key signs the links of messages from now on.  The previous keys
-- keep opening the links they signed until those expire
-- (herald.link_lifetime), unless revoke is true: then every link sent so
-- far stops opening at once.
CREATE OR REPLACE FUNCTION herald.rotate_link_key(revoke boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id integer;
BEGIN
    PERFORM herald._require_admin('rotate the link key');
    IF rotate_link_key.revoke THEN
        DELETE FROM herald.link_keys;
    ELSE
        UPDATE herald.link_keys k SET retired_at = now() WHERE k.retired_at IS NULL;
        -- keys whose every link has expired go
        DELETE FROM herald.link_keys k
         WHERE k.retired_at < now() - current_setting('herald.link_lifetime')::interval;
    END IF;
    INSERT INTO herald.link_keys (secret)
    VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION herald.rotate_link_key(boolean) IS
    'Sign links with a new key; old links keep opening until they expire, unless revoked';

-- The actions a message about event e offers on channel c: one signed link
-- each (herald._link(), links.c), as [{"id", "label", "url"}], or NULL when
-- the event awaits no decision or no public URL is set.  Messages about a
-- firing episode (fired, escalated, reminders, follow-ups) offer them, and
-- row events of rules with choices or follow-ups.  The recipient a link
-- names is the address of a single-recipient email channel, otherwise ''
-- (whoever reads the channel).
CREATE OR REPLACE FUNCTION herald._actions(e herald.event_log, r herald.rule_defs,
                                           c herald.channel_defs, key_id integer, key bytea)
RETURNS jsonb
LANGUAGE sql VOLATILE   -- each link expires herald.link_lifetime from now
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN key_id IS NOT NULL AND herald._link_base() IS NOT NULL AND r.id IS NOT NULL
             AND (e.type IN ('rule.fired', 'rule.escalated', 'rule.reminder', 'decision.followup')
                  OR (e.type LIKE 'row.%' AND (r.choices IS NOT NULL OR r.followup_after IS NOT NULL)))
        THEN (SELECT jsonb_agg(jsonb_build_object(
                         'id', herald._action_id(r.choices, a),
                         'label', herald._action_label(r.choices, a),
                         'url', herald._link(key_id, key, x.episode, a, c.id,
                                             -- an address a link cannot bind
                                             -- (HERALD_RECIPIENT_MAX, links.c)
                                             -- is not named: herald._link()
                                             -- would fail every claim
                                             CASE WHEN c.kind = 'email' AND cardinality(c.recipients) = 1
                                                       AND octet_length(c.recipients[1]) <= 254
                                                  THEN c.recipients[1] ELSE '' END))
                         ORDER BY a)
                -- a link binds the episode's first event (a follow-up
                -- about an escalation stands for its rule.fired event)
                FROM (SELECT coalesce((herald._episode(e.id)).id, e.id) AS episode) x
                     CROSS JOIN generate_series(1, coalesce(cardinality(r.choices), 2)) AS a)
        END;

-- Slack interactivity (slack.c) ---------------------------------------------

-- The ids of the Slack channels whose signing secret signed a request:
-- signature is X-Slack-Signature, "v0=" + lower-case hex HMAC-SHA256 of
-- "v0:" || request_timestamp || ":" || body.  Run by the HTTP worker's
-- role, which may not read the secrets itself; it judges the timestamp.
CREATE OR REPLACE FUNCTION herald._slack_verify(request_timestamp text, body bytea, signature text)
RETURNS integer[]
    STABLE STRICT SECURITY DEFINER LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'herald_slack_verify_sql';

-- Record a click on a Slack message's button.  The HTTP worker calls it
-- once herald._slack_verify() has said which channels' signing secrets
-- signed the request (channel_ids), with the click's fields: the button's
-- value (token, a signed link), its action_id without "herald-", the
-- Slack user's id and name, the response_url that updates the message,
-- and the request key ('slack:' || the signature).  status:
--   recorded       the decision is recorded (decision_id), as '@' || the
--                  user name (else the user id), identified by 'slack';
--                  decision.recorded updates the message via response_url
--   replayed       this request was recorded already: nothing more
--   open_page      "Record a decision" needs a text a click has not: url is
--                  the decision page; nothing is recorded
--   invalid_token  the token is not a valid link (malformed, forged, of an
--                  unknown key)
--   expired        it was, until expires_at
--   wrong_channel  its channel is not one whose signing secret signed it
--   gone           its event is purged, its rule dropped, or the rule no
--                  longer offers its choice
--   bad_request    the other fields are not what Slack sends
-- Nothing is recorded unless the status is recorded.
CREATE OR REPLACE FUNCTION herald._slack_decide(
    token text, action_id text, channel_ids integer[], user_id text, user_name text,
    response_url text, request_key text,
    OUT status text, OUT decision_id bigint, OUT url text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l record;
    e herald.event_log;
    r herald.rule_defs;
    v_label text;
BEGIN
    l := herald._link_open(_slack_decide.token);
    IF l.status = 'expired' THEN
        status := 'expired';
        RETURN;
    ELSIF l.status IS NULL OR l.status NOT IN ('valid', 'gone', 'no_choice') THEN
        status := 'invalid_token';
        RETURN;
    END IF;
    IF channel_ids IS NULL OR NOT l.channel_id = ANY (channel_ids)
       OR NOT EXISTS (SELECT 1 FROM herald.channel_defs c
                       WHERE c.id = l.channel_id AND c.kind = 'slack'
                         AND c.slack_signing_secret IS NOT NULL) THEN
        status := 'wrong_channel';
        RETURN;
    END IF;
    -- Slack ids are letters and digits; a response_url is https (or http
    -- to a loopback address, for local tests), printable ASCII without
    -- quotes or angle brackets; the request key names the signature
    IF user_id IS NULL OR user_id !~ '^[A-Za-z0-9_-]{1,64}$'
       OR action_id IS NULL OR request_key IS NULL OR request_key !~ '^slack:v0=[0-9a-f]{64}$'
       OR response_url IS NULL OR length(response_url) > 2000
       OR response_url !~ '^[!-~]+$' OR response_url ~ '["<>\\`{}|^]'
       OR (response_url !~* '^https://[a-z0-9.-]+(:[0-9]{1,5})?(/|$)'
           AND response_url !~* '^http://(127(\.[0-9]{1,3}){3}|localhost|\[::1\])(:[0-9]{1,5})?(/|$)') THEN
        status := 'bad_request';
        RETURN;
    END IF;

    IF l.status <> 'valid' THEN
        status := 'gone';
        RETURN;
    END IF;
    e := l.e;
    r := l.r;
    v_label := herald._action_label(r.choices, l.action);
    IF action_id IS DISTINCT FROM herald._action_id(r.choices, l.action) THEN
        status := 'bad_request';    -- the button does not say what its link says
        RETURN;
    END IF;
    IF r.choices IS NULL AND l.action = 2 THEN
        status := 'open_page';
        url := herald._link_base() || '/d/' || token;
        RETURN;
    END IF;

    decision_id := herald._record_decision(
        e,
        CASE WHEN r.choices IS NULL THEN 'acknowledgement' ELSE 'decision' END,
        CASE WHEN r.choices IS NOT NULL THEN v_label END,
        '@' || CASE WHEN user_name ~ '^@?[[:alnum:]._-]{1,80}$' THEN ltrim(user_name, '@')
                    ELSE user_id END,
        'herald_http', 'slack',
        choice => CASE WHEN r.choices IS NOT NULL THEN v_label END,
        actor_id => user_id, channel_id => l.channel_id,
        request_key => request_key, response_url => response_url);
    status := CASE WHEN decision_id IS NULL THEN 'replayed' ELSE 'recorded' END;
END;
$$;

-- When the next follow-up about an event is due: followup_after after the
-- event, then every followup_every after the last one; NULL when no more
-- will be asked.  Saturated: a huge delay is never, not an error.
CREATE OR REPLACE FUNCTION herald._followup_due(created_at timestamptz, asked_at timestamptz,
                                     followup_after interval, followup_every interval)
RETURNS timestamptz
LANGUAGE sql STABLE
RETURN CASE WHEN asked_at IS NULL THEN herald._time_plus(created_at, followup_after)
            ELSE herald._time_plus(asked_at, followup_every) END;

-- An event's message as a message without actions shows it (NULL
-- template: its type's default), in at most max_bytes bytes (template.c).
CREATE OR REPLACE FUNCTION herald._render(template text, rule text, event_id bigint, type text,
                                          payload jsonb, max_bytes integer) RETURNS text
    STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_render_sql';

-- What a follow-up quotes of the alert it asks about, a (its episode's
-- first event) of rule r: its message as its messages rendered it (the
-- rule's template for its type, or the type's default; at most 2,000 bytes), key,
-- value, level, when it happened (about_at, in UTC), and for a threshold
-- episode whether it is still firing (is_open) or resolved.
CREATE OR REPLACE FUNCTION herald._followup_about(a herald.event_log, r herald.rule_defs,
                                                  is_open boolean) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_strip_nulls(jsonb_build_object(
    'about_event_id', a.id,
    'about_type', a.type,
    'about_created_at', a.created_at,
    'about_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
    'about_message', herald._render(CASE WHEN a.type NOT LIKE 'decision.%'
                                         THEN coalesce(r.messages ->> a.type, r.message) END,
                                    a.rule, a.id, a.type, a.payload, 2000),
    'key', a.payload -> 'key',
    'about_value', a.payload -> 'value',
    'about_level', a.payload -> 'level',
    'about_state', CASE WHEN a.type = 'rule.fired'
                        THEN CASE WHEN is_open THEN 'still firing' ELSE 'resolved' END END));

-- Follow-ups, sent by the scheduler: every episode awaiting a decision (a
-- rule.fired event, which stands for its escalation and reminders, and
-- row events of rules with followup_after) gets a decision.followup event
-- on its rule's channels once it is followup_after old, and again every
-- followup_every, until a decision about any event of the episode is
-- recorded.  A follow-up quotes the episode's first event
-- (herald._followup_about()).  Once a threshold episode resolves (no
-- instance has it open any more), its follow-ups stop; with
-- followup_on_resolve 'ask_once' the next one that falls due is still
-- asked, the last.  A follow-up that falls due while its rule is silenced
-- is asked once the silence ends.  decision_url, a template with
-- {{event_id}}, gives the link.  Returns when the next follow-up falls due
-- (never in the past: a silenced one is due when its silence ends), NULL
-- when none waits.
CREATE OR REPLACE FUNCTION herald._send_followups(decision_url text) RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    v_rule herald.rule_defs;
    a herald.event_log;
    v_open boolean;
BEGIN
    FOR e IN
        SELECT ev.id, ev.type, ev.rule_id, ev.payload, r.followup_every,
               r.enabled AND r.followup_after IS NOT NULL AS active,
               herald._followup_due(ev.created_at, ev.asked_at, r.followup_after,
                                    r.followup_every) AS due
          FROM herald.event_log ev
          LEFT JOIN herald.rule_defs r ON r.id = ev.rule_id
         WHERE ev.awaits_decision
           AND (r.id IS NULL OR NOT r.enabled OR r.followup_after IS NULL
                OR herald._followup_due(ev.created_at, ev.asked_at, r.followup_after,
                                        r.followup_every) IS NULL
                OR herald._followup_due(ev.created_at, ev.asked_at, r.followup_after,
                                        r.followup_every) <= now())
         ORDER BY ev.created_at
           FOR UPDATE OF ev SKIP LOCKED
    LOOP
        -- the episode's first event: an escalation (which awaits a decision
        -- only when its rule.fired event was muted) stands for it
        a := NULL;
        IF e.type = 'rule.escalated' THEN
            SELECT x.* INTO a FROM herald.event_log x
             WHERE x.id = (e.payload ->> 'fired_event_id')::bigint;
        END IF;
        IF a.id IS NULL THEN
            SELECT x.* INTO a FROM herald.event_log x WHERE x.id = e.id;
        END IF;
        SELECT x.* INTO v_rule FROM herald.rule_defs x WHERE x.id = e.rule_id;
        -- a threshold episode is open while an instance has it firing
        v_open := a.type <> 'rule.fired'
                  OR EXISTS (SELECT 1 FROM herald.rule_instances i
                              WHERE i.rule_id = e.rule_id AND i.fired_event_id = a.id);
        IF NOT coalesce(e.active, false) OR e.due IS NULL
           OR (NOT v_open AND v_rule.followup_on_resolve = 'stop')
           -- decided, through any event of the episode
           OR EXISTS (SELECT 1 FROM herald.decision_log d
                       WHERE d.event_id IN (a.id, e.id) AND d.kind = 'decision') THEN
            -- nothing more to ask: out of the index
            UPDATE herald.event_log x SET awaits_decision = NULL WHERE x.id = e.id;
            CONTINUE;
        END IF;
        IF (herald._active_silence(e.rule_id)).id IS NOT NULL THEN
            CONTINUE;           -- asked once the silence ends
        END IF;
        PERFORM herald._emit(e.rule_id, 'decision.followup',
                 herald._followup_about(a, v_rule, v_open) || jsonb_strip_nulls(jsonb_build_object(
                    'sql', format('SELECT herald.decide(%s, %L);', a.id, 'what was decided'),
                    'link', CASE WHEN coalesce(decision_url, '') <> ''
                                 THEN replace(decision_url, '{{event_id}}', a.id::text) END)),
                 a.id);
        UPDATE herald.event_log x
           SET asked_at = now(),
               -- after the resolution, this was the last one
               awaits_decision = CASE WHEN e.followup_every IS NOT NULL AND v_open THEN true END
         WHERE x.id = e.id;
    END LOOP;

    -- when the next one falls due: per rule, its first, or the end of the
    -- silence that holds it back
    RETURN (SELECT min(greatest(d.due, (herald._active_silence(d.rule_id)).until))
              FROM (SELECT ev.rule_id,
                           min(herald._followup_due(ev.created_at, ev.asked_at, r.followup_after,
                                                    r.followup_every)) AS due
                      FROM herald.event_log ev JOIN herald.rule_defs r ON r.id = ev.rule_id
                     WHERE ev.awaits_decision AND r.enabled AND r.followup_after IS NOT NULL
                     GROUP BY ev.rule_id) d
             WHERE d.due < 'infinity');
END;
$$;

CREATE OR REPLACE VIEW herald.decisions WITH (security_barrier) AS
SELECT d.id, d.event_id, e.type AS event_type, e.rule, d.kind, d.decision, d.action, d.note,
       d.decided_by, d.recorded_by, d.decided_at,
       d.choice, d.identified_by, d.actor_id, c.name AS channel, d.action_owner, d.action_due
  FROM herald.decision_log d
  LEFT JOIN herald.event_log e ON e.id = d.event_id
  LEFT JOIN herald._all_rules r ON r.id = e.rule_id
  LEFT JOIN herald.channel_defs c ON c.id = d.channel_id
 WHERE herald._may_see(r.owner);

-- The story of each event, in time order: the evaluations that led to it
-- (the one that emitted it, and the pending period before it), the event,
-- every delivery attempt, follow-ups, acknowledgements and decisions, and
-- the changes of its rule made while its episode was open.
CREATE OR REPLACE VIEW herald.timeline WITH (security_barrier) AS
SELECT t.event_id, t.at, t.kind, t.detail
  FROM (
    SELECT e.id AS event_id, l.evaluated_at AS at, 'evaluation'::text AS kind,
           format('%s: value %s, %s -> %s', coalesce(nullif(l.key, ''), r.name),
                  coalesce(l.value::text, 'no data'), coalesce(l.state_before, 'new'),
                  l.state_after) AS detail
      FROM herald.event_log e
      JOIN herald._all_rules r ON r.id = e.rule_id AND r.kind = 'threshold'
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
    SELECT herald._delivery_event(a.delivery_id), a.started_at, 'delivery',
           format('%s attempt %s: %s', c.name, a.attempt,
                  coalesce('HTTP ' || a.http_status, '') || coalesce(' ' || a.error, ''))
      FROM herald.attempt_log a
      JOIN herald.channel_defs c ON c.id = a.channel_id
    UNION ALL
    SELECT f.about_event_id, f.created_at, 'followup',
           'asked what was decided'
           || CASE WHEN f.payload ->> 'about_state' = 'resolved' THEN ', after it resolved' ELSE '' END
           || CASE WHEN f.silenced_by IS NOT NULL THEN ' (silenced)' ELSE '' END
      FROM herald.event_log f
     WHERE f.about_event_id IS NOT NULL AND f.type = 'decision.followup'
    UNION ALL
    -- "ann@example.com decided (link, via ops-mail): Roll back the form:
    -- reverted at 14:00 (action: tell support, by bob, due 2026-12-04)"
    SELECT d.event_id, d.decided_at, d.kind,
           CASE WHEN d.kind = 'decision'
                THEN format('%s decided (%s%s): %s', d.decided_by, d.identified_by,
                            coalesce(', via ' || c.name, ''),
                            CASE WHEN d.choice IS NOT NULL AND d.decision IS DISTINCT FROM d.choice
                                 THEN d.choice || ': ' || d.decision ELSE d.decision END)
                     || coalesce(' (action: ' || d.action || coalesce(', by ' || d.action_owner, '')
                                 || coalesce(', due ' || d.action_due, '') || ')', '')
                ELSE format('%s acknowledged (%s%s)', d.decided_by, d.identified_by,
                            coalesce(', via ' || c.name, '')) || coalesce(': ' || d.note, '') END
      FROM herald.decision_log d
      LEFT JOIN herald.channel_defs c ON c.id = d.channel_id
    UNION ALL
    -- "bob changed threshold 50 -> 80", in the story of each episode that
    -- was open then
    SELECT o.event_id, x.changed_at, 'rule.changed',
           format('%s changed %s', x.changed_by::text COLLATE "default",
                  (SELECT string_agg(format('%s %s -> %s', c.key,
                                            coalesce(c.value ->> 'old', 'none'),
                                            coalesce(c.value ->> 'new', 'none')), ', ' ORDER BY c.key)
                     FROM jsonb_each(x.changes) c))
      FROM herald.rule_change_log x
      CROSS JOIN LATERAL unnest(x.open_event_ids) AS o(event_id)
       ) t
  JOIN herald.event_log ev ON ev.id = t.event_id
  LEFT JOIN herald._all_rules vr ON vr.id = ev.rule_id
 WHERE herald._may_see(vr.owner);

-- Per rule, for the episodes that call for a decision (rule.fired events,
-- which stand for their escalations and reminders, and row events)
-- created in [since, until): how many, how
-- many got a decision, how long acknowledging and deciding took, how many
-- follow-ups were sent about them, the decisions counted per choice and
-- per channel they came from ("sql" for none), and, for a grouped threshold
-- rule, the episodes and those decided per key.
CREATE OR REPLACE FUNCTION herald.decision_report(since timestamptz DEFAULT now() - interval '30 days',
                                                  until timestamptz DEFAULT now())
RETURNS TABLE (rule text, events bigint, decided bigint, decided_share numeric,
               median_time_to_acknowledge interval, median_time_to_decide interval,
               followups bigint, by_choice jsonb, by_channel jsonb, by_key jsonb)
LANGUAGE sql VOLATILE   -- an API function: it reports on its caller's rules
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH ev AS (
        SELECT e.id, e.rule, e.created_at, e.payload ->> 'key' AS key,
               f.first_ack, f.first_decision, f.followups
          FROM herald.event_log e
          LEFT JOIN herald._all_rules r ON r.id = e.rule_id
          -- decisions are recorded on the episode's first event (herald._episode)
          CROSS JOIN LATERAL (
                SELECT min(d.decided_at) FILTER (WHERE d.kind = 'acknowledgement') AS first_ack,
                       min(d.decided_at) FILTER (WHERE d.kind = 'decision') AS first_decision,
                       (SELECT count(*) FROM herald.event_log x
                         WHERE x.about_event_id = e.id AND x.type = 'decision.followup') AS followups
                  FROM herald.decision_log d WHERE d.event_id = e.id) f
         WHERE e.created_at >= decision_report.since AND e.created_at < decision_report.until
           -- the caller's rules, or all of them for herald_admin
           AND herald._may_see(r.owner, herald._invoker())
           AND (e.type = 'rule.fired' OR e.type LIKE 'row.%'))
    SELECT ev.rule,
           count(*),
           count(ev.first_decision),
           round(count(ev.first_decision)::numeric / count(*), 4),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ev.first_ack - ev.created_at),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ev.first_decision - ev.created_at),
           sum(ev.followups)::bigint,
           (SELECT jsonb_object_agg(x.choice, x.n) FROM (
                SELECT coalesce(d.choice, d.kind) AS choice, count(*) AS n
                  FROM herald.decision_log d JOIN ev e2 ON e2.id = d.event_id
                 WHERE e2.rule IS NOT DISTINCT FROM ev.rule
                 GROUP BY 1) x),
           (SELECT jsonb_object_agg(x.channel, x.n) FROM (
                SELECT coalesce(c.name, d.identified_by) AS channel, count(*) AS n
                  FROM herald.decision_log d JOIN ev e2 ON e2.id = d.event_id
                  LEFT JOIN herald.channel_defs c ON c.id = d.channel_id
                 WHERE e2.rule IS NOT DISTINCT FROM ev.rule
                 GROUP BY 1) x),
           (SELECT jsonb_object_agg(x.key, jsonb_build_object('events', x.events,
                                                              'decided', x.decided))
              FROM (SELECT e2.key, count(*) AS events, count(e2.first_decision) AS decided
                      FROM ev e2
                     WHERE e2.rule IS NOT DISTINCT FROM ev.rule AND e2.key IS NOT NULL
                     GROUP BY 1) x)
      FROM ev
     GROUP BY ev.rule
     ORDER BY ev.rule;
END;
COMMENT ON FUNCTION herald.decision_report(timestamptz, timestamptz) IS
    'Per rule: events calling for a decision, the share decided, median times to acknowledge and to decide, decisions per choice, per channel and per key';

-- Decision pages (decision_page.c, served by the HTTP worker) ---------------

-- A per-form token: made_at (unix seconds) and a MAC over the link token and
-- made_at, under the key that signed the link (NULL when the link's MAC does
-- not match).  Whether a submitted one is genuine and at most max_age
-- seconds old.  Reached only through the functions below.
CREATE OR REPLACE FUNCTION herald._form_token(token text, made_at bigint) RETURNS text
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_form_token_sql';
CREATE OR REPLACE FUNCTION herald._form_ok(token text, form text, max_age integer) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'herald_form_ok_sql';

-- One recorded decision, as a line of the page.
CREATE OR REPLACE FUNCTION herald._decision_line(d herald.decision_log) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN to_char(d.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"') || ' · '
       || CASE WHEN d.kind = 'acknowledgement' THEN 'Acknowledged'
               WHEN d.choice IS NOT NULL AND d.decision IS DISTINCT FROM d.choice
               THEN d.choice || ': ' || d.decision
               ELSE coalesce(d.choice, 'Decided: ' || d.decision) END
       || ' by ' || d.decided_by
       || CASE d.identified_by WHEN 'link' THEN ' (signed link'
                               WHEN 'slack' THEN ' (Slack'
                               ELSE ' (SQL' END
       || coalesce(', channel ' || (SELECT c.name FROM herald.channel_defs c
                                      WHERE c.id = d.channel_id), '') || ')'
       || coalesce('. Note: ' || d.note, '')
       || coalesce('. Next step: ' || d.action, '')
       || coalesce('. Owner: ' || d.action_owner, '')
       || coalesce('. Due: ' || d.action_due::text, '');

-- A link as the HTTP worker opens it: herald._link_check()'s status and
-- fields, or status 'gone' (its event or rule is no longer there) or
-- 'no_choice' (the rule no longer offers its action); e and r, its event
-- and rule, when 'valid'.
CREATE OR REPLACE FUNCTION herald._link_open(token text,
    OUT status text, OUT event_id bigint, OUT action integer, OUT channel_id integer,
    OUT recipient text, OUT expires_at timestamptz, OUT e herald.event_log, OUT r herald.rule_defs)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l record;
BEGIN
    SELECT * INTO l FROM herald._link_check(_link_open.token);
    status := l.status;
    event_id := l.event_id;
    action := l.action;
    channel_id := l.channel_id;
    recipient := l.recipient;
    expires_at := l.expires_at;
    IF l.status <> 'valid' THEN
        RETURN;
    END IF;
    SELECT x.* INTO e FROM herald.event_log x WHERE x.id = l.event_id;
    SELECT x.* INTO r FROM herald.rule_defs x WHERE x.id = e.rule_id;
    IF e.id IS NULL OR r.id IS NULL THEN
        status := 'gone';
    ELSIF herald._action_label(r.choices, l.action) IS NULL THEN
        status := 'no_choice';
    END IF;
END;
$$;

-- What the page of a link shows.  status is herald._link_check()'s, or
-- 'gone' (its event or rule is no longer there), or 'no_choice' (the rule
-- no longer offers the link's action); the other columns are set when it
-- is 'valid'.  labels are the actions the rule offers, 1..n; decisions the
-- episode's, oldest first (the latest 50); fact_columns the columns a row
-- event shows (herald._fact_columns).  Run by the HTTP worker's role.
CREATE OR REPLACE FUNCTION herald._link_page(token text, made_at bigint,
    OUT status text, OUT event_id bigint, OUT event_type text, OUT rule text,
    OUT message text, OUT created_at text, OUT payload jsonb, OUT has_choices boolean,
    OUT labels text[], OUT action integer, OUT channel text, OUT recipient text,
    OUT expires_at timestamptz, OUT form_token text, OUT decisions text[], OUT mine text,
    OUT fact_columns text[], OUT messages jsonb, OUT timezone text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l record;
    e herald.event_log;
    r herald.rule_defs;
BEGIN
    l := herald._link_open(_link_page.token);
    status := l.status;
    IF l.status <> 'valid' THEN
        RETURN;
    END IF;
    e := l.e;
    r := l.r;
    event_id := e.id;
    event_type := e.type;
    rule := e.rule;
    message := CASE WHEN e.type NOT LIKE 'decision.%' THEN r.message END;
    messages := CASE WHEN e.type NOT LIKE 'decision.%' THEN r.messages END;
    created_at := to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    payload := e.payload;
    IF e.type LIKE 'row.%' THEN
        fact_columns := herald._fact_columns(r.facts, r.on_table);
    END IF;
    has_choices := r.choices IS NOT NULL;
    labels := ARRAY(SELECT herald._action_label(r.choices, a)
                      FROM generate_series(1, coalesce(cardinality(r.choices), 2)) a ORDER BY a);
    action := l.action;
    SELECT c.name, c.timezone INTO channel, timezone
      FROM herald.channel_defs c WHERE c.id = l.channel_id;
    recipient := l.recipient;
    expires_at := l.expires_at;
    form_token := herald._form_token(_link_page.token, _link_page.made_at);
    decisions := ARRAY(SELECT line FROM (
                        SELECT herald._decision_line(d) AS line, d.decided_at, d.id
                          FROM herald.decision_log d WHERE d.event_id = e.id
                         ORDER BY d.decided_at DESC, d.id DESC LIMIT 50) x
                       ORDER BY x.decided_at, x.id);
    -- what the recipient this link names answered through it last (a link
    -- to a channel's readers names nobody: each reader answers anew)
    IF l.recipient <> '' THEN
        SELECT herald._decision_line(d) INTO mine
          FROM herald.decision_log d
         WHERE d.event_id = e.id AND d.identified_by = 'link' AND d.actor_id = l.recipient
           AND d.channel_id = l.channel_id
         ORDER BY d.decided_at DESC, d.id DESC LIMIT 1;
    END IF;
END;
$$;

-- Record what a decision page's form says, as the recipient its link
-- names (or, for a link to a channel's readers, the name typed in), after
-- checking the link and the form token (valid for a day).  status is
-- herald._link_page()'s, or 'form' (no genuine form token), 'action' (an
-- action the rule does not offer), 'empty' (a decision without text), 'name' (no name where one is needed), 'due' (not
-- a date from 2000 to 2999), 'recorded', or 'already' (this form was
-- submitted before: decision_id and line are the decision it recorded).
CREATE OR REPLACE FUNCTION herald._link_decide(token text, form text, action integer,
    said text, next_step text, owner text, due text, name text,
    OUT status text, OUT decision_id bigint, OUT line text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l record;
    e herald.event_log;
    r herald.rule_defs;
    v_label text;
    v_due date;
    v_key text := 'link:' || _link_decide.form;
    v_who text;
    d herald.decision_log;
BEGIN
    l := herald._link_open(_link_decide.token);
    status := l.status;
    IF l.status <> 'valid' THEN
        RETURN;
    END IF;
    IF _link_decide.form IS NULL OR NOT herald._form_ok(_link_decide.token, _link_decide.form, 86400) THEN
        status := 'form';
        RETURN;
    END IF;
    e := l.e;
    r := l.r;
    -- submitted before: what it recorded
    SELECT x.* INTO d FROM herald.decision_log x WHERE x.request_key = v_key;
    IF d.id IS NOT NULL THEN
        status := 'already';
        decision_id := d.id;
        line := herald._decision_line(d);
        RETURN;
    END IF;
    -- the link's own action is offered (herald._link_open()); one the page
    -- never offered is a bad form
    v_label := herald._action_label(r.choices, _link_decide.action);
    IF v_label IS NULL THEN
        status := 'action';
        RETURN;
    END IF;
    IF r.choices IS NULL AND _link_decide.action = 2 AND coalesce(btrim(_link_decide.said), '') = '' THEN
        status := 'empty';
        RETURN;
    END IF;
    v_who := CASE WHEN l.recipient <> '' THEN l.recipient ELSE btrim(_link_decide.name) END;
    IF coalesce(v_who, '') = '' THEN
        status := 'name';
        RETURN;
    END IF;
    IF coalesce(btrim(_link_decide.due), '') <> '' THEN
        BEGIN
            v_due := btrim(_link_decide.due)::date;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
            v_due := NULL;
        END;
        IF v_due IS NULL OR v_due NOT BETWEEN '2000-01-01' AND '2999-12-31' THEN
            status := 'due';
            RETURN;
        END IF;
    END IF;

    decision_id := herald._record_decision(
        e,
        CASE WHEN r.choices IS NULL AND _link_decide.action = 1 THEN 'acknowledgement' ELSE 'decision' END,
        CASE WHEN r.choices IS NULL AND _link_decide.action = 1 THEN NULL
             WHEN r.choices IS NULL THEN _link_decide.said
             ELSE coalesce(nullif(btrim(_link_decide.said), ''), v_label) END,
        v_who, 'herald_http', 'link',
        choice => CASE WHEN r.choices IS NOT NULL THEN v_label END,
        note => CASE WHEN r.choices IS NULL AND _link_decide.action = 1 THEN _link_decide.said END,
        action => _link_decide.next_step,
        action_owner => _link_decide.owner,
        action_due => v_due,
        actor_id => nullif(l.recipient, ''),
        channel_id => l.channel_id,
        request_key => v_key);
    IF decision_id IS NULL THEN
        -- a concurrent submission of the same form won
        SELECT x.* INTO d FROM herald.decision_log x WHERE x.request_key = v_key;
        status := 'already';
    ELSE
        SELECT x.* INTO d FROM herald.decision_log x WHERE x.id = decision_id;
        status := 'recorded';
    END IF;
    decision_id := d.id;
    line := herald._decision_line(d);
END;
$$;
