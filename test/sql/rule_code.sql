-- Rule code runs with its owner's rights and nothing more, in every path:
-- the scheduler, a capture, herald.preview(), declaration checks, planning
-- and constant folding included.  A hostile author's functions try to call
-- pg_herald's API or run COPY ... TO PROGRAM from a metric or a condition;
-- each one reports who ran it, so the errors recorded show that nothing ran
-- as another role.
\set SHOW_CONTEXT never
CREATE ROLE herald_gate_alice NOLOGIN;
CREATE ROLE herald_gate_admin NOLOGIN;
GRANT herald_author TO herald_gate_alice;
GRANT herald_admin TO herald_gate_admin;
GRANT USAGE ON SCHEMA test TO herald_gate_alice, herald_gate_admin;
GRANT EXECUTE ON FUNCTION test.error_of(text), test.url(text) TO herald_gate_alice, herald_gate_admin;
GRANT SELECT ON test.config TO herald_gate_admin;
CREATE SCHEMA gate AUTHORIZATION herald_gate_alice;
CREATE TABLE gate_orders (id int PRIMARY KEY, amount numeric);
GRANT SELECT, INSERT ON gate_orders TO herald_gate_alice;

SET ROLE herald_gate_admin;
SELECT herald.create_channel('gate-hook', 'webhook', test.url('/gate/hook'));
RESET ROLE;

SET ROLE herald_gate_alice;
-- Runs COPY ... TO PROGRAM and says as whom it ran and what happened.
CREATE FUNCTION gate.copy_program() RETURNS numeric LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    EXECUTE $c$COPY (SELECT 1) TO PROGRAM 'true'$c$;
    RAISE EXCEPTION 'ran as %: COPY TO PROGRAM succeeded', current_user;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'ran as %: COPY TO PROGRAM refused', current_user;
END
$$;
-- The same, folded while planning (constant arguments), or run with the
-- rows when its argument is over 50.
CREATE FUNCTION gate.evil() RETURNS numeric LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN gate.copy_program(); END $$;
CREATE FUNCTION gate.evil_of(x numeric) RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF x > 50 THEN
        RETURN gate.copy_program();
    END IF;
    RETURN x;
END
$$;
-- Declares a nested rule whose metric is evil(), folded while planning.
CREATE FUNCTION gate.tramp() RETURNS numeric LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM herald.on_threshold(name => 'gate-nested', metric => 'SELECT gate.evil()',
                                op => '>', threshold => 0, channels => ARRAY['gate-hook'],
                                every => '1 hour');
    RETURN 1;
END
$$;
-- The same from STABLE and IMMUTABLE functions, a SECURITY DEFINER one, an
-- operator, a cast and a parameter default.
CREATE FUNCTION gate.tramp_stable() RETURNS numeric LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN gate.tramp(); END $$;
CREATE FUNCTION gate.tramp_immutable() RETURNS numeric LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN gate.tramp(); END $$;
CREATE FUNCTION gate.tramp_definer() RETURNS numeric LANGUAGE plpgsql SECURITY DEFINER
    AS $$ BEGIN RETURN gate.tramp(); END $$;
CREATE FUNCTION gate.tramp_op(numeric, numeric) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN gate.tramp() > 0; END $$;
CREATE OPERATOR gate.=== (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = gate.tramp_op);
CREATE TYPE gate.ticket AS (n int);
CREATE FUNCTION gate.ticket_value(gate.ticket) RETURNS numeric LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN gate.tramp(); END $$;
CREATE CAST (gate.ticket AS numeric) WITH FUNCTION gate.ticket_value(gate.ticket);
CREATE FUNCTION gate.with_default(x numeric DEFAULT gate.tramp_immutable()) RETURNS numeric
    LANGUAGE sql IMMUTABLE AS $$ SELECT x $$;
-- pg_herald's own functions, called from rule code
CREATE FUNCTION gate.flusher() RETURNS numeric LANGUAGE plpgsql
    AS $$ BEGIN PERFORM herald.flush('1 second'); RETURN 1; END $$;
CREATE FUNCTION gate.dropper() RETURNS numeric LANGUAGE plpgsql
    AS $$ BEGIN PERFORM herald.drop_rule('gate-victim'); RETURN 1; END $$;
RESET ROLE;

-------------------------------------------------------------------------------
-- Declaration: the metric is planned (constants folded) as its author.
-------------------------------------------------------------------------------
SET ROLE herald_gate_alice;
SELECT test.error_of($$SELECT herald.on_threshold('gate-direct', 'SELECT gate.evil()', '>', 0,
                                                  ARRAY['gate-hook'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_change('gate-direct', 'gate_orders', ARRAY['gate-hook'],
                                               condition => 'gate.evil() > NEW.amount')$$);
RESET ROLE;
-- an author's SECURITY DEFINER function that declares a rule, called by a
-- superuser: the rule and its checks are the function owner's
SET ROLE herald_gate_alice;
CREATE FUNCTION gate.declare_for_me(metric text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM herald.on_threshold('gate-for-me', metric, '>', 0, ARRAY['gate-hook'], every => '1 hour');
END
$$;
RESET ROLE;
SELECT test.error_of($$SELECT gate.declare_for_me('SELECT gate.evil()')$$);
SELECT gate.declare_for_me('SELECT 1');
SELECT name, owner FROM herald.rules WHERE name = 'gate-for-me';
SELECT herald.drop_rule('gate-for-me');

-------------------------------------------------------------------------------
-- The scheduler: every metric is evaluated as alice, and each one that
-- reaches the API is refused before the nested metric is planned.
-------------------------------------------------------------------------------
SET ROLE herald_gate_alice;
SELECT herald.on_threshold('gate-victim', 'SELECT 1', '>', 5, ARRAY['gate-hook'], every => '1 hour');
SELECT herald.on_threshold('gate-' || v.name, v.metric, '>', 0, ARRAY['gate-hook'], every => '1 hour')
  FROM (VALUES ('volatile', 'SELECT 1 WHERE gate.tramp() > 0'),
               ('stable', 'SELECT gate.tramp_stable()'),
               ('definer', 'SELECT gate.tramp_definer()'),
               ('flush', 'SELECT gate.flusher()'),
               ('evil', 'SELECT gate.evil_of(count(*) + 100) FROM gate_orders'),
               ('drop', 'SELECT gate.dropper()')) AS v(name, metric);
RESET ROLE;
-- these fold at declaration already, where alice calls the API from her
-- own metric check: refused there too
SET ROLE herald_gate_alice;
SELECT test.error_of($$SELECT herald.on_threshold('gate-immutable', 'SELECT gate.tramp_immutable()', '>', 0, ARRAY['gate-hook'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_threshold('gate-operator', 'SELECT count(*) FROM gate_orders WHERE 1 OPERATOR(gate.===) 1', '>', 0, ARRAY['gate-hook'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_threshold('gate-cast', 'SELECT ROW(1)::gate.ticket::numeric', '>', 0, ARRAY['gate-hook'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_threshold('gate-default', 'SELECT gate.with_default()', '>', 0, ARRAY['gate-hook'], every => '1 hour')$$);
RESET ROLE;
SELECT herald.flush();
SELECT name, state, error FROM herald.rules WHERE name LIKE 'gate-%' ORDER BY name;
SELECT count(*) AS nested_rules FROM herald.rule_defs WHERE name = 'gate-nested';

-------------------------------------------------------------------------------
-- herald.preview() by an administrator runs alice's metric as alice.
-------------------------------------------------------------------------------
SET ROLE herald_gate_alice;
CREATE FUNCTION gate.peek() RETURNS numeric LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT count(*) FROM herald.channel_defs);
END
$$;
SELECT herald.on_threshold('gate-peek', 'SELECT gate.peek()', '>', 0, ARRAY['gate-hook'], every => '1 hour');
RESET ROLE;
SET ROLE herald_gate_admin;
SELECT key, next_state, error FROM herald.preview('gate-volatile');
SELECT key, next_state, error FROM herald.preview('gate-peek');
SELECT key, next_state, error FROM herald.preview('gate-evil');
RESET ROLE;
SELECT key, next_state, error FROM herald.preview('gate-stable');

-------------------------------------------------------------------------------
-- A capture: a superuser's INSERT runs alice's conditions as alice; the
-- write commits, the rule reports the refusal.
-------------------------------------------------------------------------------
SET ROLE herald_gate_alice;
SELECT herald.on_change('gate-row-tramp', 'gate_orders', ARRAY['gate-hook'], operations => ARRAY['INSERT'],
                        condition => 'gate.tramp() > NEW.amount');
SELECT herald.on_change('gate-row-evil', 'gate_orders', ARRAY['gate-hook'], operations => ARRAY['INSERT'],
                        condition => 'gate.evil_of(NEW.amount) > 0');
RESET ROLE;
SET client_min_messages = error;
INSERT INTO gate_orders VALUES (1, 100);
RESET client_min_messages;
SELECT count(*) AS committed FROM gate_orders;
SELECT rule, payload ->> 'error' AS error FROM herald.events
 WHERE rule LIKE 'gate-row-%' AND type = 'rule.error' ORDER BY rule;
SELECT count(*) AS nested_rules FROM herald.rule_defs WHERE name = 'gate-nested';

-------------------------------------------------------------------------------
-- Internal functions are the extension owner's: no author, no admin, no
-- PUBLIC may run them (but the pure helpers the views call), and no
-- function of pg_herald is SECURITY DEFINER.
-------------------------------------------------------------------------------
SELECT p.oid::regprocedure AS internal_but_executable
  FROM pg_proc p
 WHERE p.pronamespace = 'herald'::regnamespace AND p.proname LIKE '\_%'
   AND (has_function_privilege('herald_author', p.oid, 'EXECUTE')
        OR has_function_privilege('herald_admin', p.oid, 'EXECUTE'))
 ORDER BY 1;
-- the only SECURITY DEFINER functions are the HTTP worker's, which no one
-- else may call
SELECT p.oid::regprocedure AS security_definer_callable_by_others
  FROM pg_proc p
 WHERE p.pronamespace = 'herald'::regnamespace AND p.prosecdef
   AND (has_function_privilege('herald_author', p.oid, 'EXECUTE')
        OR has_function_privilege('herald_admin', p.oid, 'EXECUTE')
        OR has_function_privilege('public', p.oid, 'EXECUTE')
        OR NOT has_function_privilege('herald_http', p.oid, 'EXECUTE'))
 ORDER BY 1;
SET ROLE herald_gate_alice;
SELECT test.error_of($$SELECT herald._invoker()$$);
SELECT test.error_of($$SELECT herald._run_metric(1)$$);
SELECT test.error_of($$SELECT herald._declare_threshold('x', 'SELECT 1', '>', 0, ARRAY['gate-hook'], NULL, '1 hour', NULL, NULL, NULL, NULL, NULL, '0', 'ok', '5 seconds', NULL, NULL, NULL, 'public')$$);
RESET ROLE;
-- and outside an API call, even the extension's owner cannot act through
-- them on someone's behalf
SELECT test.error_of($$SELECT herald._invoker()$$);

-- clean up
SET client_min_messages = warning;
SELECT herald.flush();
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'gate-%' ORDER BY name;
SELECT herald.drop_channel('gate-hook');
DROP TABLE gate_orders;
DROP SCHEMA gate CASCADE;
DROP OWNED BY herald_gate_alice, herald_gate_admin;
DROP ROLE herald_gate_alice, herald_gate_admin;
RESET client_min_messages;
