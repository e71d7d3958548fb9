-- The event, with a clear error when there is none, or when the caller may
-- not answer it: the rule's owner (and its members) and herald_admin may.
CREATE OR REPLACE FUNCTION herald._event(event_id bigint) RETURNS herald.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e herald.event_log;
    v_owner regrole;
BEGIN
    SELECT x.* INTO e FROM herald.event_log x WHERE x.id = _event.event_id;
    IF NOT FOUND THEN
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
    -- a reminder stands for its episode: answers go to the rule.fired event
    IF e.type = 'rule.reminder' AND e.payload ? 'fired_event_id' THEN
        SELECT x.* INTO e FROM herald.event_log x
         WHERE x.id = (e.payload ->> 'fired_event_id')::bigint;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'event % does not exist', _event.event_id
                USING ERRCODE = 'undefined_object',
                      DETAIL = 'It reminds of an event that has been purged.';
        END IF;
    END IF;
    RETURN e;
END;
$$;

CREATE OR REPLACE FUNCTION herald.acknowledge(event_id bigint, note text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
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

CREATE OR REPLACE FUNCTION herald.decide(event_id bigint, decision text, action text DEFAULT NULL,
                              decided_by text DEFAULT current_user)
RETURNS bigint
LANGUAGE plpgsql
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

-- When the next follow-up about an event is due: followup_after after the
-- event, then every followup_every after the last one; NULL when no more
-- will be asked.  Saturated: a huge delay is never, not an error.
CREATE OR REPLACE FUNCTION herald._followup_due(created_at timestamptz, asked_at timestamptz,
                                     followup_after interval, followup_every interval)
RETURNS timestamptz
LANGUAGE sql STABLE
RETURN CASE WHEN asked_at IS NULL THEN herald._time_plus(created_at, followup_after)
            ELSE herald._time_plus(asked_at, followup_every) END;

-- Follow-ups, sent by the scheduler: every event awaiting a decision
-- (rule.fired, rule.escalated and row events of rules with followup_after)
-- gets a decision.followup event on its rule's channels once it is
-- followup_after old, and again every followup_every, until a decision is
-- recorded.  A follow-up that falls due while its rule is silenced is asked
-- once the silence ends.  decision_url, a template with {{event_id}}, gives
-- the link.  Returns when the next follow-up falls due (never in the past:
-- a silenced one is due when its silence ends), NULL when none waits.
CREATE OR REPLACE FUNCTION herald._send_followups(decision_url text) RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
BEGIN
    FOR e IN
        SELECT ev.id, ev.type, ev.rule_id, ev.created_at, r.followup_every,
               r.enabled AND r.followup_after IS NOT NULL AS active,
               herald._followup_due(ev.created_at, ev.asked_at, r.followup_after,
                                    r.followup_every) AS due,
               EXISTS (SELECT 1 FROM herald.decision_log d
                        WHERE d.event_id = ev.id AND d.kind = 'decision') AS decided
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
        IF e.decided OR NOT coalesce(e.active, false) OR e.due IS NULL THEN
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
       d.decided_by, d.recorded_by, d.decided_at
  FROM herald.decision_log d
  LEFT JOIN herald.event_log e ON e.id = d.event_id
  LEFT JOIN herald.rule_defs r ON r.id = e.rule_id
 WHERE herald._may_see(r.owner);

-- The story of each event, in time order: the evaluations that led to it
-- (the one that emitted it, and the pending period before it), the event,
-- every delivery attempt, follow-ups, acknowledgements and decisions.
CREATE OR REPLACE VIEW herald.timeline WITH (security_barrier) AS
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
CREATE OR REPLACE FUNCTION herald.decision_report(since timestamptz DEFAULT now() - interval '30 days',
                                                  until timestamptz DEFAULT now())
RETURNS TABLE (rule text, events bigint, decided bigint, decided_share numeric,
               median_time_to_acknowledge interval, median_time_to_decide interval,
               followups bigint)
LANGUAGE sql VOLATILE   -- an API function: it reports on its caller's rules
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
