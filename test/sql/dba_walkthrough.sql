-- What a DBA following the README relies on: herald.flush() refuses a NULL
-- timeout like every other required parameter (SQLSTATE 22004) instead of
-- answering NULL, which a script would read as "not done"; its bounds.
\set SHOW_CONTEXT never
\set VERBOSITY default

SELECT herald.flush(NULL);
SELECT herald.flush(timeout => NULL::interval);
DO $$
BEGIN
    PERFORM herald.flush(NULL);
EXCEPTION WHEN null_value_not_allowed THEN
    RAISE NOTICE 'flush(NULL): % (%)', SQLERRM, SQLSTATE;
END;
$$;
SELECT herald.flush('-1 microsecond');
SELECT herald.flush('1 hour 1 microsecond');
SELECT herald.flush('0') IS NOT NULL AS answers;

-- herald.decision_url is checked when set: an http(s) URL in one piece,
-- with {{event_id}} in it
ALTER SYSTEM SET herald.decision_url = 'not a url';
ALTER SYSTEM SET herald.decision_url = 'ftp://intranet.example/{{event_id}}';
ALTER SYSTEM SET herald.decision_url = 'https://intranet.example/decide?event=1';
ALTER SYSTEM SET herald.decision_url = 'https://intranet.example/a b/{{event_id}}';
ALTER SYSTEM SET herald.decision_url = 'https://intranet.example/decide?event={{event_id}}';
ALTER SYSTEM SET herald.decision_url = '';
ALTER SYSTEM RESET herald.decision_url;
