# pg_dump and pg_restore keep pg_herald's history with its ids: events,
# deliveries (delivered at the first try, retried, dead), attempts, rule
# instances, evaluations, decisions and the delivery workers' positions.
# The restored database has the catalog of a fresh install and numbers its
# next events after the restored ones.  Restored into a new cluster whose
# workers serve it, the channels keep their secrets (a receiver checks the
# signatures of requests from both clusters with the same secret), a
# threshold rule goes on with its episode and the rules fire again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $catalog = slurp_file("$FindBin::RealBin/../catalog.sql");
my $secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $node = HeraldTest::new_node('main', '');
my $receiver = HeraldTest::start_receiver($node);

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel('ok', 'webhook', '$receiver->{url}/ok', secret => '$secret');
SELECT herald.create_channel('down', 'webhook', '$receiver->{url}/down?status=500',
                             max_attempts => 2, retry_delay => '10 ms');
SELECT herald.on_change('order', 'orders', ARRAY['ok', 'down'], ARRAY['INSERT']);
SELECT herald.on_threshold('orders', 'SELECT count(*) FROM orders', '>', 1, ARRAY['ok'],
                           watch => ARRAY['orders'::regclass]);
INSERT INTO orders VALUES (1, 10);
INSERT INTO orders VALUES (2, 20);
));
is($node->safe_psql('postgres', q(SELECT herald.flush('60 seconds'))), 't', 'the history is made');
$node->safe_psql('postgres',
	q(SELECT herald.acknowledge(min(id), 'seen') FROM herald.events WHERE type = 'rule.fired'));
is($node->safe_psql('postgres', q(SELECT herald.flush('60 seconds'))), 't', 'the decision is announced');

my $history = q(
SELECT 'event ' || id || ' ' || type || ' ' || coalesce(rule, '') FROM herald.events
UNION ALL
SELECT format('delivery %s %s %s %s %s %s', id, event_id, channel, status, attempts, webhook_id)
  FROM herald.deliveries
UNION ALL
SELECT format('attempt %s %s %s', delivery_id, attempt, http_status) FROM herald.attempts
UNION ALL
SELECT format('evaluation %s %s %s %s', id, rule, state_after, event_id) FROM herald.evaluations
UNION ALL
SELECT format('instance %s %s %s', name, state, value) FROM herald.rules
UNION ALL
SELECT format('decision %s %s %s %s', id, event_id, kind, note) FROM herald.decisions
UNION ALL
SELECT format('cursor %s %s %s', slot, workers, position) FROM herald.delivery_cursors
UNION ALL
SELECT format('channel %s %s', id, name) FROM herald.channels
ORDER BY 1);
my $installation = $node->safe_psql('postgres', 'SELECT id FROM herald.installation');
my $before = $node->safe_psql('postgres', $history) =~ s/msg_\Q$installation\E_/msg_I_/gr;
like($before, qr/^delivery \d+ \d+ down dead 2 /m, 'the history has a dead delivery');
like($before, qr/^delivery \d+ \d+ ok delivered 1 /m, 'and deliveries delivered at the first try');
like($before, qr/^decision \d+ \d+ acknowledgement seen$/m, 'and a decision');

my $dump = $node->basedir . '/herald.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore');

my $restored_installation = $node->safe_psql('restored', 'SELECT id FROM herald.installation');
is($node->safe_psql('restored', $history) =~ s/msg_\Q$restored_installation\E_/msg_I_/gr, $before,
	'the restored database has the same history, with its ids');
isnt($restored_installation, $installation,
	'the restored database is an installation of its own (its webhook-ids are its own)');

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pg_herald');
my $expected = $node->safe_psql('fresh', $catalog);
my $got = $node->safe_psql('restored', $catalog);
ok($got eq $expected, 'the restored database has the catalog of a fresh install')
  or diag(HeraldTest::diff_lines($got, $expected));

is($node->safe_psql('restored', q(
SELECT herald._append_event('channel.test', NULL, NULL, '{}', NULL, NULL, NULL, NULL)
       > (SELECT max(id) FROM herald.event_log WHERE type <> 'channel.test'))), 't',
	'a restored database numbers its events after the restored ones');
is($node->safe_psql('restored', q(
SELECT nextval('herald.evaluation_log_id_seq') > (SELECT max(id) FROM herald.evaluation_log)
   AND nextval('herald.decision_log_id_seq') > (SELECT max(id) FROM herald.decision_log))), 't',
	'and its evaluations and decisions');

# Into a new cluster: restored while its workers serve another database,
# then served after a restart, as a DBA moving a warehouse would do it.
my $other = HeraldTest::new_node('other', '');
$other->safe_psql('postgres', 'CREATE DATABASE restored');
$other->command_ok([ 'pg_restore', '--exit-on-error', '-d', $other->connstr('restored'), $dump ],
	'pg_restore into a new cluster');
my $other_installation = $other->safe_psql('restored', 'SELECT id FROM herald.installation');
is($other->safe_psql('restored', $history) =~ s/msg_\Q$other_installation\E_/msg_I_/gr, $before,
	'the new cluster has the same history, with its ids');
$other->append_conf('postgresql.conf', "herald.database = 'restored'\n");
$other->restart;
is($other->safe_psql('restored', q(SELECT secret FROM herald.channel_defs WHERE name = 'ok')), $secret,
	'the channel keeps its secret (it is in the dump)');
is($other->safe_psql('restored', q(SELECT state FROM herald.rules WHERE name = 'orders')), 'firing',
	'the threshold rule is still firing');

my $sent_before = scalar(@{ HeraldTest::received($receiver, '/ok') });
my $last = $other->safe_psql('restored', 'SELECT max(id) FROM herald.events');
$other->safe_psql('restored', 'INSERT INTO orders VALUES (3, 30)');
$other->safe_psql('restored', 'DELETE FROM orders');
ok($other->poll_query_until('restored', q(SELECT state = 'ok' FROM herald.rules WHERE name = 'orders')),
	'the threshold rule is evaluated in the new cluster');
is($other->safe_psql('restored', q(SELECT herald.flush('60 seconds'))), 't',
	'the new cluster delivers what its rules raised');
is($other->safe_psql('restored', qq(
SELECT string_agg(type || coalesce(' ' || (payload->'new'->>'id'), ''), ', ' ORDER BY id)
  FROM herald.events WHERE id > $last AND type <> 'row.deleted')),
	'row.inserted 3, rule.resolved',
	'the row rule fires, and the threshold rule resolves its episode without firing again');
is(scalar(@{ HeraldTest::received($receiver, '/ok') }) - $sent_before, 2,
	'both events reach the receiver from the new cluster');
my $verified = `python3 $FindBin::RealBin/../verify_signature.py --log $receiver->{log} --secret $secret --path-prefix /ok`;
my @lines = split /\n/, $verified;
is(scalar(grep { !/ ok$/ } @lines), 0,
	'the requests of both clusters verify with the same secret')
  or diag($verified);
cmp_ok(scalar(@lines), '>=', $sent_before + 2, 'every request to the channel was checked');
HeraldTest::no_server_errors($other);
$other->stop;

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
done_testing();
