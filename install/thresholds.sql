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

-- t + i, saturated: 'infinity' (or '-infinity') where the sum would leave
-- the range of timestamptz, so that no parameter, however large, makes a
-- next-due computation fail.  Every "when next" of the evaluation and of
-- the follow-ups goes through it.  (Past year 190,000 is as good as never:
-- the margin covers extract()'s 30-day months.)
CREATE OR REPLACE FUNCTION herald._time_plus(t timestamptz, i interval) RETURNS timestamptz
LANGUAGE sql STABLE
RETURN CASE WHEN extract(epoch FROM t) + extract(epoch FROM i) >= 6e12 THEN 'infinity'
            WHEN extract(epoch FROM t) + extract(epoch FROM i) <= -1.5e11 THEN '-infinity'
            ELSE t + i END;

-- The silence muting a rule now, if any (the one lasting longest).
CREATE OR REPLACE FUNCTION herald._active_silence(rule_id integer) RETURNS herald.silence_defs
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT x.* FROM herald.silence_defs x
     WHERE (x.rule_id = _active_silence.rule_id OR x.rule_id IS NULL)
       AND x.ended_at IS NULL AND now() >= x.starts_at AND now() < x.until
     ORDER BY x.until DESC, x.id
     LIMIT 1;
END;

-- Record an event of a rule for the rule's channels (those of channel_ids
-- only, when given), unless a silence mutes the rule: then it is recorded
-- for none.  Returns its id; NULL when the rule does not exist.
CREATE OR REPLACE FUNCTION herald._emit(rule_id integer, type text, payload jsonb,
                             about_event_id bigint DEFAULT NULL,
                             channel_ids integer[] DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_silence integer := (herald._active_silence(_emit.rule_id)).id;
    r herald.rule_defs;
BEGIN
    SELECT x.* INTO r FROM herald.rule_defs x WHERE x.id = _emit.rule_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN herald._append_event(
        _emit.type, r.id, r.name, _emit.payload,
        CASE WHEN v_silence IS NULL THEN
            ARRAY(SELECT rc.channel_id FROM herald.rule_channels rc
                   WHERE rc.rule_id = r.id
                     AND (_emit.channel_ids IS NULL OR rc.channel_id = ANY (_emit.channel_ids))
                   ORDER BY rc.channel_id)
        ELSE '{}' END,
        v_silence,
        -- one follow-up stream per episode, about its rule.fired event: an
        -- escalation opens it only when the episode has none (its rule.fired
        -- event was muted, or came before the rule asked for follow-ups)
        r.followup_after IS NOT NULL AND v_silence IS NULL
            AND (_emit.type = 'rule.fired'
                 OR (_emit.type = 'rule.escalated'
                     AND NOT EXISTS (SELECT 1 FROM herald.event_log f
                                      WHERE f.id = (_emit.payload ->> 'fired_event_id')::bigint
                                        AND (f.awaits_decision OR f.asked_at IS NOT NULL)))),
        _emit.about_event_id);
END;
$$;

CREATE OR REPLACE FUNCTION herald._compare(v numeric, op text, t numeric) RETURNS boolean
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
CREATE OR REPLACE FUNCTION herald._transition(r herald.rule_defs, i herald.rule_instances,
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
              OR (i.state = 'pending' AND at >= herald._time_plus(i.pending_since, r.pending_for)) THEN
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
          AND at >= herald._time_plus(n.last_notified_at, r.repeat_every) THEN
        event := 'rule.reminder';
        n.last_notified_at := at;
    END IF;

    n.since := CASE WHEN n.state IS DISTINCT FROM i.state THEN at ELSE i.since END;
    n.next_check_at := CASE
        WHEN n.state = 'pending' THEN herald._time_plus(n.pending_since, r.pending_for)
        WHEN n.firing_since IS NOT NULL AND n.acknowledged_at IS NULL
        THEN herald._time_plus(n.last_notified_at, r.repeat_every)
    END;
    -- a timer already past (a pending instance kept without data) would
    -- call for evaluations without end: the next commit or schedule decides;
    -- one that never falls due is none
    IF n.next_check_at <= at OR n.next_check_at = 'infinity' THEN
        n.next_check_at := NULL;
    END IF;
END;
$$;

-- What one evaluation does to each instance of rule r, given the metric's
-- result m: one row per instance, existing (before) or new (before NULL).
-- present is false for a key the metric no longer returns.
CREATE OR REPLACE FUNCTION herald._plan_evaluation(r herald.rule_defs, m herald._metric_result,
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

-- The payload of a threshold event, with the metric's recent values.  A
-- resolution keeps the level its episode had and since when it fired (the
-- instance, back to ok, has neither).  crossed: the threshold the value
-- crossed, the warning threshold at warning level, else the threshold; on
-- resolution the one it came back past: the recover threshold, else the
-- lowest alerting one (the warning threshold, else the threshold).
-- A resolution also names the episode's rule.fired event (fired_event_id).
CREATE OR REPLACE FUNCTION herald._threshold_payload(r herald.rule_defs, before herald.rule_instances,
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
    'crossed', CASE WHEN after.state = 'ok'
                    THEN coalesce(r.recover_threshold, r.warning_threshold, r.threshold)
                    WHEN after.state = 'error' THEN NULL
                    WHEN coalesce(after.level, before.level) = 'warning' THEN r.warning_threshold
                    WHEN coalesce(after.level, before.level) = 'critical' THEN r.threshold END,
    'state', after.state,
    'previous_state', coalesce(before.state, 'ok'),
    'level', coalesce(after.level, before.level),
    'since', coalesce(after.firing_since, before.firing_since),
    -- the episode's rule.fired event (a resolution names the one it ends)
    'fired_event_id', coalesce(after.fired_event_id, before.fired_event_id),
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
CREATE OR REPLACE FUNCTION herald._meeting(r herald.rule_defs, event text, after herald.rule_instances)
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

-- Apply the result m of rule r's metric, observed at time at: move each
-- instance's state machine, emit the events, log the evaluation.  Returns
-- when the rule's next timer falls due (end of a pending period, a
-- reminder), or NULL.
CREATE OR REPLACE FUNCTION herald._apply_evaluation(r herald.rule_defs, m herald._metric_result,
                                         at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    v_after herald.rule_instances;
    v_event bigint;
BEGIN
    FOR p IN SELECT * FROM herald._plan_evaluation(r, m, at) LOOP
        v_after := p.after;
        v_event := NULL;
        IF p.event IS NOT NULL THEN
            v_event := herald._emit(r.id, p.event,
                                    herald._threshold_payload(r, p.before, v_after)
                                    || herald._meeting(r, p.event, v_after)
                                    -- the first transition after alter_rule() says why
                                    || CASE WHEN p.event IN ('rule.fired', 'rule.escalated', 'rule.resolved')
                                                 AND r.altered_at > (p.before).last_evaluated_at
                                            THEN jsonb_build_object('reason', 'rule changed')
                                            ELSE '{}' END);
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
        VALUES (r.id, v_after.key, at, v_after.value, m.duration_ms,
                (p.before).state, v_after.state, v_after.level, v_event, v_after.error);
    END LOOP;

    RETURN (SELECT min(i.next_check_at) FROM herald.rule_instances i WHERE i.rule_id = r.id);
END;
$$;

-- Evaluate a threshold rule now and apply the result: called by the
-- scheduler (or an evaluator), one transaction per evaluation.  Returns when
-- the rule's next timer falls due, or NULL.  With an error: the evaluation
-- failed outside its metric (the scheduler saw the error, its transaction
-- is gone), and that is recorded as the metric's failures are, every
-- instance in state error, rule.error for those that were not.
CREATE OR REPLACE FUNCTION herald._evaluate(rule_id integer, error text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r herald.rule_defs;
BEGIN
    SELECT * INTO r FROM herald.rule_defs x
     WHERE x.id = _evaluate.rule_id AND x.kind = 'threshold' AND x.enabled;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN herald._apply_evaluation(
        r,
        CASE WHEN _evaluate.error IS NULL THEN herald._run_metric(r.id)
             ELSE ROW(NULL, NULL, _evaluate.error, NULL)::herald._metric_result END,
        now());
END;
$$;

-- Declaration -----------------------------------------------------------------

-- A threshold rule's definition r (its search_path the one its metric is
-- checked and run with), checked as a declaration checks it (with the
-- rights of herald._invoker()), with the channels it names: returns r with
-- watch normalized (each table once, NULL for none) and grouped set.
-- herald._declare_threshold() and herald.alter_rule() both call it.
CREATE OR REPLACE FUNCTION herald._check_threshold_rule(r herald.rule_defs, channels text[])
RETURNS herald.rule_defs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_channel_ids integer[];
    v_watch regclass[] := '{}';
    v_tbl regclass;
    v_above boolean := r.op IN ('>', '>=');
BEGIN
    IF r.metric IS NULL THEN
        RAISE EXCEPTION 'metric must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Give a query returning one number, or a key and a number per row.';
    END IF;
    IF r.op IS NULL OR r.op NOT IN ('>', '>=', '<', '<=', '=', '<>') THEN
        RAISE EXCEPTION 'unknown comparison operator "%"', r.op
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Operators are >, >=, <, <=, = and <>.';
    END IF;
    IF r.threshold IS NULL THEN
        RAISE EXCEPTION 'threshold must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM herald._check_finite('threshold', r.threshold);
    PERFORM herald._check_finite('warning_threshold', r.warning_threshold);
    PERFORM herald._check_finite('recover_threshold', r.recover_threshold);
    v_channel_ids := herald._channel_ids(_check_threshold_rule.channels);

    IF r.watch IS NOT NULL THEN
        FOREACH v_tbl IN ARRAY r.watch LOOP
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
    IF cardinality(v_watch) = 0 AND r.every IS NULL THEN
        RAISE EXCEPTION 'a threshold rule needs watch or every'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'watch lists the tables whose commits cause an evaluation; every schedules evaluations.';
    END IF;
    -- the ranges keep every timer the scheduler computes in range
    PERFORM herald._check_range('every', r.every, '1 second', '366 days');

    IF r.warning_threshold IS NOT NULL THEN
        IF r.op IN ('=', '<>') THEN
            RAISE EXCEPTION 'warning_threshold needs one of the operators >, >=, <, <='
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_above AND r.warning_threshold >= r.threshold)
           OR (NOT v_above AND r.warning_threshold <= r.threshold) THEN
            RAISE EXCEPTION 'warning_threshold % is not less severe than threshold %',
                            r.warning_threshold, r.threshold
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('With operator %s the warning level is crossed first: it must be %s the threshold.',
                                    r.op, CASE WHEN v_above THEN 'below' ELSE 'above' END);
        END IF;
    END IF;
    IF r.recover_threshold IS NOT NULL THEN
        IF r.op IN ('=', '<>') THEN
            RAISE EXCEPTION 'recover_threshold needs one of the operators >, >=, <, <='
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_above AND r.recover_threshold
                        > coalesce(r.warning_threshold, r.threshold))
           OR (NOT v_above AND r.recover_threshold
                        < coalesce(r.warning_threshold, r.threshold)) THEN
            RAISE EXCEPTION 'recover_threshold % is beyond the alerting threshold %',
                            r.recover_threshold,
                            coalesce(r.warning_threshold, r.threshold)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('With operator %s an instance recovers %s: recover_threshold must be at or %s the lowest alerting threshold.',
                                    r.op,
                                    CASE WHEN v_above THEN 'at or below it' ELSE 'at or above it' END,
                                    CASE WHEN v_above THEN 'below' ELSE 'above' END);
        END IF;
    END IF;
    PERFORM herald._check_range('pending_for', r.pending_for, '0', '30 days');
    PERFORM herald._check_range('repeat_every', r.repeat_every, '1 second', '30 days');
    PERFORM herald._check_range('min_interval', r.min_interval, '0', '1 day',
                                required => true);
    IF r.no_data IS NULL OR r.no_data NOT IN ('ok', 'alert', 'keep') THEN
        RAISE EXCEPTION 'unknown no_data policy "%"', r.no_data
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Policies are ok, alert and keep.';
    END IF;
    PERFORM herald._check_range('query_timeout', r.query_timeout,
                                '10 milliseconds', '1 hour', required => true);

    -- parsed, planned and started as the declaring role
    r.grouped := herald._check_metric(r.metric, r.search_path);
    PERFORM herald._check_template(r.message, 'threshold', NULL);
    PERFORM herald._check_messages(r.messages, 'threshold', NULL);
    r.messages := nullif(r.messages, '{}');
    PERFORM herald._check_followups(r.followup_after,
                                    r.followup_every);
    IF r.followup_on_resolve IS NULL OR r.followup_on_resolve NOT IN ('stop', 'ask_once') THEN
        RAISE EXCEPTION 'unknown followup_on_resolve "%"', coalesce(left(r.followup_on_resolve, 100), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is stop (no more follow-ups once the episode resolves) or ask_once (one more).';
    END IF;
    PERFORM herald._check_range('meeting', r.meeting, '5 minutes', '8 hours');
    IF r.meeting IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM herald.channel_defs c
                        WHERE c.id = ANY (v_channel_ids) AND c.kind = 'email') THEN
            RAISE EXCEPTION 'a meeting needs an email channel'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The invitation goes to the recipients of the rule''s email channels.';
        END IF;
    END IF;

    PERFORM herald._check_choices(r.choices, r.announce_decisions);
    r.watch := nullif(v_watch, '{}');
    RETURN r;
END;
$$;

CREATE OR REPLACE FUNCTION herald._declare_threshold(
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
    search_path       text DEFAULT NULL,
    choices           text[] DEFAULT NULL,
    announce_decisions boolean DEFAULT true,
    followup_on_resolve text DEFAULT 'stop',
    messages          jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule herald.rule_defs;
BEGIN
    PERFORM herald._check_rule_name(_declare_threshold.name);
    PERFORM herald._warn_unserved('The rule will not be evaluated.');

    v_rule.metric := _declare_threshold.metric;
    v_rule.search_path := _declare_threshold.search_path;
    v_rule.op := _declare_threshold.op;
    v_rule.threshold := _declare_threshold.threshold;
    v_rule.watch := _declare_threshold.watch;
    v_rule.every := _declare_threshold.every;
    v_rule.message := _declare_threshold.message;
    v_rule.messages := _declare_threshold.messages;
    v_rule.warning_threshold := _declare_threshold.warning_threshold;
    v_rule.recover_threshold := _declare_threshold.recover_threshold;
    v_rule.pending_for := _declare_threshold.pending_for;
    v_rule.repeat_every := _declare_threshold.repeat_every;
    v_rule.min_interval := _declare_threshold.min_interval;
    v_rule.no_data := _declare_threshold.no_data;
    v_rule.query_timeout := _declare_threshold.query_timeout;
    v_rule.followup_after := _declare_threshold.followup_after;
    v_rule.followup_every := _declare_threshold.followup_every;
    v_rule.meeting := _declare_threshold.meeting;
    v_rule.choices := _declare_threshold.choices;
    v_rule.announce_decisions := _declare_threshold.announce_decisions;
    v_rule.followup_on_resolve := _declare_threshold.followup_on_resolve;
    v_rule := herald._check_threshold_rule(v_rule, _declare_threshold.channels);

    INSERT INTO herald.rule_defs (name, kind, owner, message, messages, metric, grouped,
                                  search_path, op, threshold, warning_threshold,
                                  recover_threshold, watch, every, pending_for, repeat_every,
                                  min_interval, no_data, query_timeout, followup_after,
                                  followup_every, meeting, choices, announce_decisions,
                                  followup_on_resolve)
    VALUES (_declare_threshold.name, 'threshold', herald._invoker(), v_rule.message,
            v_rule.messages,
            v_rule.metric, v_rule.grouped, v_rule.search_path,
            v_rule.op, v_rule.threshold, v_rule.warning_threshold,
            v_rule.recover_threshold, v_rule.watch, v_rule.every,
            v_rule.pending_for, v_rule.repeat_every, v_rule.min_interval,
            v_rule.no_data, v_rule.query_timeout,
            v_rule.followup_after, v_rule.followup_every,
            v_rule.meeting, v_rule.choices, v_rule.announce_decisions,
            v_rule.followup_on_resolve)
    RETURNING * INTO v_rule;
    INSERT INTO herald.rule_channels (rule_id, channel_id)
    SELECT v_rule.id, unnest(herald._channel_ids(_declare_threshold.channels));
    PERFORM herald._sync_rule_triggers(v_rule);
END;
$$;
-- The declaration proper runs as the extension's owner; this wrapper runs
-- as the caller and hands it the caller's search_path, with which the metric
-- is checked and later run (as SET search_path FROM CURRENT would).
CREATE OR REPLACE FUNCTION herald.on_threshold(
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
    choices           text[] DEFAULT NULL,
    announce_decisions boolean DEFAULT true,
    followup_on_resolve text DEFAULT 'stop',
    messages          jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql
BEGIN ATOMIC
    SELECT herald._declare_threshold(name, metric, op, threshold, channels, watch, every, message,
                                     warning_threshold, recover_threshold, pending_for,
                                     repeat_every, min_interval, no_data, query_timeout,
                                     followup_after, followup_every, meeting,
                                     pg_catalog.current_setting('search_path'), choices,
                                     announce_decisions, followup_on_resolve, messages);
END;
COMMENT ON FUNCTION herald.on_threshold(text, text, text, numeric, text[], regclass[], interval, text, numeric, numeric, interval, interval, interval, text, interval, interval, interval, interval, text[], boolean, text, jsonb) IS
    'Declare a threshold rule: a metric compared with thresholds, evaluated as watched tables commit and on a schedule';

-- Preview, silences -------------------------------------------------------------

CREATE OR REPLACE FUNCTION herald.preview(name text)
RETURNS TABLE (key text, value numeric, state text, next_state text, level text,
               event text, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r herald.rule_defs;
BEGIN
    SELECT * INTO r FROM herald.rule_defs x WHERE x.name = preview.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule "%" does not exist', left(preview.name, 200)
            USING ERRCODE = 'undefined_object';
    END IF;
    -- whose it is first: nothing more of another's rule is told
    IF NOT herald._may_see(r.owner, herald._invoker()) THEN
        RAISE EXCEPTION 'permission denied to preview rule "%"', preview.name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The metric runs as the rule''s owner.';
    END IF;
    IF r.kind <> 'threshold' THEN
        RAISE EXCEPTION 'rule "%" is not a threshold rule', preview.name
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Only threshold rules can be previewed.';
    END IF;
    RETURN QUERY
        SELECT (p.after).key, (p.after).value, (p.before).state, (p.after).state,
               (p.after).level, p.event, (p.after).error
          FROM herald._plan_evaluation(r, herald._run_metric(r.id), now()) p;
END;
$$;
COMMENT ON FUNCTION herald.preview(text) IS
    'Evaluate a threshold rule now: per instance, the value and the state it would move to; stores and sends nothing';

CREATE OR REPLACE FUNCTION herald.silence(rule text, until timestamptz, reason text) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule_id integer;
    v_id integer;
    v_length interval;
BEGIN
    IF silence.rule IS NOT NULL THEN
        v_rule_id := (herald._own_rule(silence.rule, 'silence')).id;
    ELSE
        PERFORM herald._require_admin('silence every rule');
    END IF;
    -- how long it lasts; an infinite or distant until is clamped to a
    -- length that is still out of range (timestamps that far apart do not
    -- subtract)
    IF silence.until IS NOT NULL THEN
        v_length := least(greatest(silence.until, now() - interval '1 day'),
                          now() + interval '2 years') - now();
    END IF;
    PERFORM herald._check_range('until', v_length, '1 second', '366 days', required => true,
                                hint => 'A silence ends at least 1 second and at most 366 days from now.');
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

CREATE OR REPLACE FUNCTION herald.unsilence(rule text) RETURNS integer
LANGUAGE plpgsql
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
