# Rules whose table was dropped under 0.1.0 (which left them pointing at a
# dead OID: drop_rule failed with a syntax error) are disabled by ALTER
# EXTENSION pg_herald UPDATE, can be dropped, and cannot be enabled again;
# the updated installation disables the rules of tables dropped later.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = HeraldTest::new_node('dropped', '');
$node->safe_psql('postgres', 'CREATE DATABASE up');
# The rules as 0.1.0 stored them (its API needs its own library, so they
# are written directly), then their table dropped: 0.1.0 had nothing to
# notice that.
$node->safe_psql('up', q(
CREATE EXTENSION pg_herald VERSION '0.1.0';
CREATE SCHEMA doomed;
CREATE TABLE doomed.shape (id int);
CREATE TABLE keep (id int);
INSERT INTO herald.channel_defs (name, kind, target, max_attempts, retry_delay, timeout, created_by)
VALUES ('c', 'webhook', 'http://127.0.0.1:9/c', 1, '1 second', '1 second', current_user);
INSERT INTO herald.rule_defs (name, kind, owner, on_table, operations)
VALUES ('row', 'row', current_user::regrole, 'doomed.shape', '{INSERT}'),
       ('live', 'row', current_user::regrole, 'keep', '{INSERT}');
INSERT INTO herald.rule_defs (name, kind, owner, metric, grouped, search_path, op, threshold,
                              watch, query_timeout)
VALUES ('thr', 'threshold', current_user::regrole, 'SELECT count(*) FROM doomed.shape', false,
        'public', '>', 1, ARRAY['doomed.shape'::regclass, 'keep'], '5 seconds');
INSERT INTO herald.rule_channels SELECT r.id, c.id FROM herald.rule_defs r, herald.channel_defs c;
CREATE TRIGGER herald_watch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keep
    FOR EACH STATEMENT EXECUTE FUNCTION herald.touch();
ALTER TABLE keep DISABLE TRIGGER herald_watch;
DROP SCHEMA doomed CASCADE;
));

$node->safe_psql('up', 'ALTER EXTENSION pg_herald UPDATE');
is($node->safe_psql('up', q(
SELECT string_agg(name || ' ' || enabled || ' ' || (table_dropped_at IS NOT NULL), ', ' ORDER BY name)
  FROM herald.rule_defs)),
	'live true false, row false true, thr false true',
	'the update disables the rules of dropped tables, and only those');

my ($rc, $out, $err) = $node->psql('up', q(SELECT herald.enable_rule('row')));
like($err, qr/cannot enable rule "row": a table it uses was dropped/,
	'such a rule cannot be enabled again');
is($node->psql('up', q(SELECT herald.drop_rule('row'); SELECT herald.drop_rule('thr');)), 0,
	'such rules can be dropped');
is($node->safe_psql('up', q(SELECT count(*) FROM pg_trigger WHERE tgname = 'herald_watch')), '0',
	'the table that remains loses the watch trigger no rule needs any more');

$node->safe_psql('up', 'DROP TABLE keep');
is($node->safe_psql('up', q(
SELECT r.enabled || ' ' || e.type || ' ' || (e.payload ->> 'table')
  FROM herald.rule_defs r JOIN herald.event_log e ON e.rule_id = r.id WHERE r.name = 'live')),
	'false rule.error public.keep',
	'after the update, dropping a table disables its rule and records why');

my @errors = grep { !/cannot enable rule "row"/ }
  HeraldTest::server_log($node, 0, qr/\b(?:ERROR|PANIC):/);
is(scalar(@errors), 0, 'the server log shows no other error') or diag(join "\n", @errors);
done_testing();
