-- The HTTP worker's role: it may check links and record through the three
-- functions granted to it, and nothing else.
\set SHOW_CONTEXT never
CREATE TABLE test.link_decisions AS SELECT count(*) AS n FROM herald.decision_log WHERE identified_by = 'link';
SET ROLE herald_http;
SELECT count(*) FROM herald.link_keys;
SELECT count(*) FROM herald.decision_log;
SELECT herald._form_token('x', 0);
SELECT herald._form_ok('x', 'y', 86400);
SELECT herald.acknowledge(1);
-- what is not a link opens nothing, and records nothing
SELECT status, event_id, form_token FROM herald._link_page('not-a-token', 0);
SELECT status, decision_id FROM herald._link_decide('not-a-token', '1.a.b', 1, 'x', NULL, NULL, NULL, 'me');
SELECT status FROM herald._link_page(NULL, NULL);
-- the token's shape, but a MAC no key made
SELECT status IN ('forged', 'unknown_key') AS refused
  FROM herald._link_check('AQAAAAEAAAAAAAAAAQEAAAABAAAAAGsYdHAPYW5uQGV4YW1wbGUuY29tSissnOiW8DD0mL9wLl9tvn_gXCh0ygBZRgFa5SJG23k');
RESET ROLE;
SELECT count(*) - (SELECT n FROM test.link_decisions) AS recorded
  FROM herald.decision_log WHERE identified_by = 'link';
