-- Security: the herald_admin and herald_author roles, secrets, rules run as
-- their owner, network policy settings.
\set SHOW_CONTEXT never
SELECT rolname, rolsuper, rolcanlogin, rolcreaterole, rolbypassrls
  FROM pg_roles WHERE rolname IN ('herald_admin', 'herald_author') ORDER BY 1;
SELECT pg_has_role('herald_admin', 'herald_author', 'MEMBER') AS admin_is_author;

CREATE ROLE herald_test_admin NOLOGIN;
CREATE ROLE herald_test_alice NOLOGIN;
CREATE ROLE herald_test_bob NOLOGIN;
CREATE ROLE herald_test_nobody NOLOGIN;
GRANT herald_admin TO herald_test_admin;
GRANT herald_author TO herald_test_alice, herald_test_bob;
GRANT USAGE ON SCHEMA test TO herald_test_admin, herald_test_alice, herald_test_bob, herald_test_nobody;
GRANT EXECUTE ON FUNCTION test.error_of(text), test.url(text)
    TO herald_test_admin, herald_test_alice, herald_test_bob, herald_test_nobody;
GRANT SELECT ON test.config TO herald_test_admin;

-- orders under row-level security: each seller sees its own
CREATE TABLE sec_orders (id int PRIMARY KEY, seller name NOT NULL, amount numeric NOT NULL);
ALTER TABLE sec_orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_orders ON sec_orders USING (seller = current_user);
INSERT INTO sec_orders VALUES (1, 'herald_test_alice', 10), (2, 'herald_test_bob', 5000),
                              (3, 'herald_test_bob', 7000);
-- a table nobody else may read, and one everybody may
CREATE TABLE sec_payroll (employee text, salary numeric);
CREATE TABLE sec_tickets (id int PRIMARY KEY, title text);
GRANT SELECT ON sec_orders, sec_tickets TO herald_test_alice, herald_test_bob;

-------------------------------------------------------------------------------
-- The administrator manages channels and reads their secrets.
-------------------------------------------------------------------------------
SET ROLE herald_test_admin;
SELECT herald.create_channel('sec-hook', 'webhook', test.url('/security/hook'),
                             secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                             headers => '{"Authorization": "Bearer topsecret-header"}');
SELECT herald.create_channel('sec-chat', 'google_chat',
                             'https://chat.example/v1/spaces/AAA/messages?key=topsecret-key&token=topsecret-token');
SELECT herald.create_channel('sec-mail', 'email', 'smtp://mailer:topsecret-url@127.0.0.1:25',
                             secret => 'topsecret-password', recipients => ARRAY['ops@example.com'],
                             sender => 'herald@example.com');
SELECT name, secret, regexp_replace(target, '127.0.0.1:\d+/', '127.0.0.1:PORT/') AS target
  FROM herald.channel_defs WHERE name LIKE 'sec-%' ORDER BY name;
SELECT name, created_by FROM herald.channels WHERE name LIKE 'sec-%' ORDER BY name;
RESET ROLE;

-------------------------------------------------------------------------------
-- An author sees channels masked, and no secret anywhere it can read.
-------------------------------------------------------------------------------
SET ROLE herald_test_alice;
SELECT name, regexp_replace(target, '127.0.0.1:\d+/', '127.0.0.1:PORT/') AS target, secret, headers
  FROM herald.channels WHERE name LIKE 'sec-%' ORDER BY name;
DO $$
DECLARE
    r record;
    n bigint;
    readable text[] := '{}';
    leaks bigint := 0;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c
               JOIN pg_namespace ns ON ns.oid = c.relnamespace
              WHERE ns.nspname = 'herald' AND c.relkind IN ('r', 'v', 'm', 'p')
              ORDER BY c.relname
    LOOP
        IF has_table_privilege(r.rel, 'SELECT') THEN
            EXECUTE format('SELECT count(*) FROM %s t WHERE t::text ~ %L', r.rel,
                           'topsecret|whsec_MfKQ')
               INTO n;
            leaks := leaks + n;
            readable := readable || r.rel::text;
        END IF;
    END LOOP;
    RAISE NOTICE 'readable: %', readable;
    RAISE NOTICE 'rows showing a secret: %', leaks;
END;
$$;
SELECT test.error_of($$SELECT secret FROM herald.channel_defs$$);
SELECT test.error_of($$SELECT * FROM herald.event_log$$);
SELECT test.error_of($$SELECT herald.create_channel('mine', 'webhook', 'https://hooks.example.com/')$$);
SELECT test.error_of($$SELECT herald.alter_channel('sec-hook', max_attempts => 1)$$);
SELECT test.error_of($$SELECT herald.drop_channel('sec-hook')$$);
SELECT test.error_of($$SELECT herald.test_channel('sec-hook')$$);
SELECT test.error_of($$SELECT herald.redeliver(1)$$);
SELECT test.error_of($$SELECT herald.silence(NULL, now() + interval '1 hour', 'all of them')$$);
SELECT test.error_of($$INSERT INTO herald.rule_defs (name, kind, owner) VALUES ('x', 'row', 'herald_test_alice')$$);
SELECT test.error_of($$UPDATE herald.channel_defs SET target = 'https://evil.example/'$$);
SELECT test.error_of($$CREATE TRIGGER t AFTER INSERT ON herald.event_log FOR EACH STATEMENT EXECUTE FUNCTION herald.touch()$$);
SELECT test.error_of($$CREATE POLICY p ON herald.delivery_queue USING (true)$$);
SELECT test.error_of($$SELECT herald._run_metric(1)$$);

-- rules over what the author may not read are refused at declaration
SELECT test.error_of($$SELECT herald.on_change('peek', 'sec_payroll', ARRAY['sec-hook'])$$);
SELECT test.error_of($$SELECT herald.on_threshold('peek', 'SELECT sum(salary) FROM sec_payroll', '>', 0, ARRAY['sec-hook'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_change('peek', 'sec_tickets', ARRAY['sec-hook'], condition => 'EXISTS (SELECT 1 FROM public.sec_payroll)')$$);
SELECT test.error_of($$SELECT herald.on_threshold('peek', $m$SELECT length(pg_read_file('/etc/passwd'))$m$, '>', 0, ARRAY['sec-hook'], every => '1 hour')$$);
SELECT test.error_of($$SELECT herald.on_threshold('peek', $m$SELECT count(*) FROM pg_ls_dir('/')$m$, '>', 0, ARRAY['sec-hook'], every => '1 hour')$$);
-- whole rows of a table under row-level security cannot be captured
SELECT test.error_of($$SELECT herald.on_change('peek', 'sec_orders', ARRAY['sec-hook'])$$);

-- a metric sees what its owner sees: alice's 10, not bob's 12,000
SELECT herald.on_threshold('alice-sales', 'SELECT sum(amount) FROM sec_orders', '>', 100,
                           ARRAY['sec-hook'], every => '1 hour');
-- a condition sees what its owner sees: alice can see one order, not three
SELECT herald.on_change('alice-one-order', 'sec_tickets', ARRAY['sec-hook'], ARRAY['INSERT'],
                        condition => '(SELECT count(*) FROM public.sec_orders) = 1');
SELECT herald.on_change('alice-three-orders', 'sec_tickets', ARRAY['sec-hook'], ARRAY['INSERT'],
                        condition => '(SELECT count(*) FROM public.sec_orders) = 3');
RESET ROLE;
INSERT INTO sec_tickets VALUES (1, 'written by a superuser, who sees all three orders');
SELECT herald.flush();
SELECT name, owner, state, value FROM herald.rules WHERE name = 'alice-sales';
SELECT rule, type FROM herald.events WHERE rule LIKE 'alice-%' ORDER BY id;
-- privileges are checked every time a rule runs: alice loses SELECT
REVOKE SELECT ON sec_tickets FROM herald_test_alice;
INSERT INTO sec_tickets VALUES (2, 'after the revoke');
SELECT herald.flush();
SELECT rule, type, payload ->> 'error' AS error, payload ? 'new' AS has_row
  FROM herald.events WHERE rule LIKE 'alice-%' ORDER BY id;

-- rule code cannot call pg_herald's API (it would run in someone else's session)
SET ROLE herald_test_alice;
SELECT herald.on_threshold('sneaky', $m$SELECT count(*) FROM herald.on_threshold('sneakier', 'SELECT 1', '>', 0, ARRAY['sec-hook'], every => '1 hour')$m$,
                           '>', 0, ARRAY['sec-hook'], every => '1 hour');
SELECT key, next_state, error FROM herald.preview('sneaky');
RESET ROLE;
SELECT herald.flush();
SELECT name, state, error FROM herald.rules WHERE name LIKE 'sneak%' ORDER BY name;
SELECT herald.drop_rule('sneaky');

-- an author sees its own rules and what they produced, nothing of others'
CREATE TABLE test.alice_event AS
SELECT max(id) AS id FROM herald.event_log WHERE rule LIKE 'alice-%';
GRANT SELECT ON test.alice_event TO herald_test_bob;
SET ROLE herald_test_bob;
SELECT count(*) AS alice_rules FROM herald.rules WHERE name LIKE 'alice-%';
SELECT count(*) AS alice_events FROM herald.events WHERE rule LIKE 'alice-%';
SELECT count(*) AS alice_deliveries FROM herald.deliveries d
  JOIN herald.channels c ON c.name = d.channel WHERE c.name = 'sec-hook';
SELECT count(*) AS alice_evaluations FROM herald.evaluations WHERE rule LIKE 'alice-%';
SELECT test.error_of($$SELECT herald.acknowledge((SELECT id FROM test.alice_event))$$);
SELECT test.error_of($$SELECT herald.decide((SELECT id FROM test.alice_event), 'not mine')$$);
-- the error says who may answer
DO $$
DECLARE
    v_detail text;
    v_hint text;
BEGIN
    PERFORM herald.decide(id, 'not mine') FROM test.alice_event;
EXCEPTION WHEN insufficient_privilege THEN
    GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'detail: %', v_detail;
    RAISE NOTICE 'hint: %', v_hint;
END
$$;
RESET ROLE;
SET ROLE herald_test_alice;
SELECT count(*) > 0 AS own_events FROM herald.events WHERE rule LIKE 'alice-%';
RESET ROLE;

-- an author manages its own rules only
SET ROLE herald_test_bob;
SELECT test.error_of($$SELECT herald.drop_rule('alice-sales')$$);
SELECT test.error_of($$SELECT herald.disable_rule('alice-sales')$$);
SELECT test.error_of($$SELECT herald.silence('alice-sales', now() + interval '1 hour', 'not mine')$$);
SELECT test.error_of($$SELECT * FROM herald.preview('alice-sales')$$);
SELECT herald.on_threshold('bob-sales', 'SELECT sum(amount) FROM sec_orders', '>', 100,
                           ARRAY['sec-hook'], every => '1 hour');
SELECT key, value, next_state FROM herald.preview('bob-sales');
SELECT herald.silence('bob-sales', now() + interval '1 hour', 'quarter closing') > 0 AS silenced;
SELECT herald.unsilence('bob-sales') AS ended;
SELECT herald.drop_rule('bob-sales');
RESET ROLE;

-- the administrator may change anyone's rules
SET ROLE herald_test_admin;
SELECT herald.disable_rule('alice-sales');
SELECT herald.enable_rule('alice-sales');
RESET ROLE;

-- a role without pg_herald's roles can do nothing
SET ROLE herald_test_nobody;
SELECT test.error_of($$SELECT * FROM herald.rules$$);
SELECT test.error_of($$SELECT herald.on_change('x', 'sec_tickets', ARRAY['sec-hook'])$$);
SELECT test.error_of($$SELECT herald.flush()$$);
RESET ROLE;

-------------------------------------------------------------------------------
-- Network policy settings: checked when set.
-------------------------------------------------------------------------------
SHOW herald.deny_networks;
SHOW herald.allow_networks;
ALTER SYSTEM SET herald.deny_networks = '10.0.0.0/8, fd00::/8, 192.168.1.1';
ALTER SYSTEM RESET herald.deny_networks;
\set VERBOSITY default
ALTER SYSTEM SET herald.deny_networks = '10.0.0.0/33';
ALTER SYSTEM SET herald.allow_networks = 'example.com';
\set VERBOSITY terse
SELECT test.error_of($$SET herald.deny_networks = '10.0.0.0/8'$$);

-- the CA file: an absolute path or empty, set by the superuser, shown to no
-- one else (herald_admin manages channels, not trust)
SHOW herald.ca_file;
ALTER SYSTEM SET herald.ca_file = '/etc/ssl/private-ca.pem';
ALTER SYSTEM RESET herald.ca_file;
\set VERBOSITY default
ALTER SYSTEM SET herald.ca_file = 'ca.pem';
\set VERBOSITY terse
SELECT test.error_of($$SET herald.ca_file = '/tmp/ca.pem'$$);
SET ROLE herald_test_admin;
SELECT left(test.error_of($$SHOW herald.ca_file$$), 5) AS sqlstate;  -- the message differs between versions
SELECT count(*) FROM pg_settings WHERE name = 'herald.ca_file';
RESET ROLE;

-- clean up for the tests that follow, once what the rules sent is delivered
SELECT herald.flush();
SELECT herald.drop_rule(name) FROM herald.rule_defs WHERE name LIKE 'alice-%';
SELECT herald.drop_channel(name) FROM herald.channel_defs WHERE name LIKE 'sec-%';
DROP TABLE test.alice_event;
DROP OWNED BY herald_test_admin, herald_test_alice, herald_test_bob, herald_test_nobody;
DROP ROLE herald_test_admin, herald_test_alice, herald_test_bob, herald_test_nobody;
