-- The scheduler under bad rule states: it never loops without sleeping,
-- one rule's state never stops another's, metrics are read-only, and an
-- evaluation that fails outside its metric still ends in state error with a
-- rule.error event.
SELECT herald.create_channel('limits-hook', 'webhook', test.url('/limits'));
CREATE TABLE limits_gauge (name text PRIMARY KEY, v int);
INSERT INTO limits_gauge VALUES ('quiet', 50), ('loud', 50), ('far', 50);

-- How many transactions the whole database committed in a window of
-- `secs`, this session idle meanwhile: a scheduler that spins commits
-- thousands a second; one that sleeps, a few.  (Nothing to wait for but
-- time: the window is the measure.)
CREATE FUNCTION test.commits_during(secs float8) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_before bigint;
BEGIN
    PERFORM pg_stat_force_next_flush();
    PERFORM pg_stat_clear_snapshot();
    SELECT xact_commit INTO v_before FROM pg_stat_database WHERE datname = current_database();
    PERFORM pg_sleep(secs);
    PERFORM pg_stat_clear_snapshot();
    RETURN (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) - v_before;
END
$$;

-------------------------------------------------------------------------------
-- A silenced rule whose follow-up is due; a rule whose follow-up is a
-- million years away; a rule whose follow-ups go out meanwhile.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('limits-quiet', $$SELECT v FROM limits_gauge WHERE name = 'quiet'$$, '<', 10,
                           ARRAY['limits-hook'], watch => ARRAY['limits_gauge'::regclass],
                           followup_after => '1 second');
SELECT herald.on_threshold('limits-far', $$SELECT v FROM limits_gauge WHERE name = 'far'$$, '<', 10,
                           ARRAY['limits-hook'], watch => ARRAY['limits_gauge'::regclass],
                           followup_after => '1 hour');
SELECT herald.on_threshold('limits-loud', $$SELECT v FROM limits_gauge WHERE name = 'loud'$$, '<', 10,
                           ARRAY['limits-hook'], watch => ARRAY['limits_gauge'::regclass],
                           followup_after => '1 second', followup_every => '1 second');
-- what 0.1.0 accepted (its upgrade now brings it within range), forced in
-- past the declaration's and the table's checks: the scheduler copes
SELECT test.drop_checks('herald.rule_defs', 'rule_defs_followup_after_check', 'rule_defs_every_check',
                        'rule_defs_pending_for_check') AS dropped;
UPDATE herald.rule_defs SET followup_after = '1000000 years' WHERE name = 'limits-far';
SELECT herald.flush();
UPDATE limits_gauge SET v = 1;
SELECT herald.flush();
SELECT herald.silence('limits-quiet', now() + interval '1 hour', 'maintenance') > 0 AS silenced;
SELECT name, state FROM herald.rules WHERE name LIKE 'limits-%' ORDER BY name;

-- the loud rule's follow-ups go out (twice: followup_every), the quiet
-- one's is held back, the far one's never comes
SELECT test.wait_until($$SELECT count(*) >= 2 FROM herald.events
                          WHERE rule = 'limits-loud' AND type = 'decision.followup'$$) AS loud_followups;
SELECT rule, count(*) FILTER (WHERE type = 'decision.followup') AS followups
  FROM herald.events WHERE rule IN ('limits-quiet', 'limits-far') GROUP BY rule ORDER BY rule;
-- the quiet rule's follow-up is due and silenced: the scheduler sleeps
-- (a spinning one commits thousands of transactions here)
SELECT herald.decide((SELECT max(id) FROM herald.events
                       WHERE rule = 'limits-loud' AND type = 'rule.fired'), 'looked into it') > 0 AS decided;
SELECT test.commits_during(2) < 40 AS scheduler_sleeps;

-- once the silence ends, the held-back question is asked
SELECT herald.unsilence('limits-quiet');
SELECT test.wait_until($$SELECT count(*) = 1 FROM herald.events
                          WHERE rule = 'limits-quiet' AND type = 'decision.followup'$$) AS asked_after_silence;
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'limits-%';

-------------------------------------------------------------------------------
-- Schedules and pending periods past the range of timestamptz.
-------------------------------------------------------------------------------
SELECT herald.on_threshold('limits-rare', 'SELECT 1', '>', 10, ARRAY['limits-hook'], every => '1 hour');
SELECT herald.on_threshold('limits-patient', $$SELECT v FROM limits_gauge WHERE name = 'far'$$, '<', 10,
                           ARRAY['limits-hook'], watch => ARRAY['limits_gauge'::regclass],
                           pending_for => '1 hour');
UPDATE herald.rule_defs SET every = '300000 years' WHERE name = 'limits-rare';
UPDATE herald.rule_defs SET pending_for = '300000 years' WHERE name = 'limits-patient';
SELECT herald.flush();
UPDATE limits_gauge SET v = 2 WHERE name = 'far';
SELECT herald.flush();
SELECT test.commits_during(2) < 40 AS scheduler_sleeps;
-- no error: the rare rule evaluated once (when declared), the patient one
-- pending for ever, with no timer
SELECT r.name, r.state, r.error, i.next_check_at
  FROM herald.rules r JOIN herald.rule_instances i ON i.rule_id = (SELECT id FROM herald.rule_defs WHERE name = r.name)
 WHERE r.name LIKE 'limits-%' ORDER BY r.name;
SELECT r.name, count(*) AS evaluations
  FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
 WHERE r.name LIKE 'limits-%' GROUP BY r.name ORDER BY r.name;
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'limits-%';
SELECT test.restore_checks() AS restored;

-------------------------------------------------------------------------------
-- Metrics are read-only, whatever they call.
-------------------------------------------------------------------------------
CREATE TABLE limits_diary (note text);
CREATE SEQUENCE limits_seq;
CREATE FUNCTION limits_write() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO limits_diary VALUES ('the metric wrote this');
    RETURN 1;
END
$$;
CREATE FUNCTION limits_unlock() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SET LOCAL transaction_read_only = off;
    INSERT INTO limits_diary VALUES ('the metric wrote this');
    RETURN 1;
END
$$;
SELECT herald.on_threshold('limits-writer', 'SELECT limits_write()', '>', 10,
                           ARRAY['limits-hook'], every => '1 hour');
SELECT herald.on_threshold('limits-nextval', $$SELECT nextval('limits_seq')$$, '>', 10,
                           ARRAY['limits-hook'], every => '1 hour');
SELECT herald.on_threshold('limits-unlock', 'SELECT limits_unlock()', '>', 10,
                           ARRAY['limits-hook'], every => '1 hour');
SELECT key, next_state, error FROM herald.preview('limits-writer');
SELECT herald.flush();
SELECT name, state, error FROM herald.rules WHERE name LIKE 'limits-%' ORDER BY name;
SELECT count(*) AS rows_written FROM limits_diary;
SELECT last_value, is_called FROM limits_seq;
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'limits-%';

-------------------------------------------------------------------------------
-- Evaluations that fail outside the metric: state error, rule.error.
-------------------------------------------------------------------------------
-- a key too long to store is the metric's failure, said plainly
SELECT herald.on_threshold('limits-long-key', $$SELECT repeat('k', 1048576), 1$$, '>', 0,
                           ARRAY['limits-hook'], every => '1 hour');
-- storing the evaluation fails (here a trigger refuses it)
SELECT herald.on_threshold('limits-unstorable', $$SELECT v FROM limits_gauge WHERE name = 'far'$$, '<', 10,
                           ARRAY['limits-hook'], watch => ARRAY['limits_gauge'::regclass]);
SELECT herald.on_threshold('limits-bystander', $$SELECT v FROM limits_gauge WHERE name = 'loud'$$, '<', 10,
                           ARRAY['limits-hook'], watch => ARRAY['limits_gauge'::regclass]);
SELECT herald.flush();
CREATE FUNCTION test.refuse_evaluation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state_after <> 'error'
       AND NEW.rule_id = (SELECT id FROM herald.rule_defs WHERE name = 'limits-unstorable') THEN
        RAISE EXCEPTION 'no room for this evaluation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER limits_refuse BEFORE INSERT ON herald.evaluation_log FOR EACH ROW
    EXECUTE FUNCTION test.refuse_evaluation();
UPDATE limits_gauge SET v = 3;
SELECT herald.flush();
DROP TRIGGER limits_refuse ON herald.evaluation_log;
SELECT name, state, value, error FROM herald.rules WHERE name LIKE 'limits-%' ORDER BY name;
SELECT rule, type, payload ->> 'state' AS state, payload ->> 'error' AS error
  FROM herald.events WHERE rule LIKE 'limits-%' AND type IN ('rule.error', 'rule.fired')
 ORDER BY rule, id;
-- once it can be stored again, the rule recovers
UPDATE limits_gauge SET v = 4;
SELECT herald.flush();
SELECT name, state, value, error FROM herald.rules WHERE name = 'limits-unstorable';
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'limits-%';
SELECT herald.drop_channel('limits-hook');
