# pg_upgrade from an older PostgreSQL with pg_herald installed: the
# backlog is delivered after the upgrade, with its webhook-ids, and the
# rules, their state and the decisions are there.
#
# Runs where an older PostgreSQL with pg_herald built for it is installed
# beside this one: test/run sets HERALD_OLD_PG_BINDIR when
# HERALD_OLD_PG_CONFIG names it (scripts/matrix.sh does in the 17 root,
# with the host's PostgreSQL 15: `bash test/run --pg upgrade`); skipped
# otherwise.
#
# The old cluster gets pg_herald, a row rule on orders above 100, a
# threshold rule on how many there are (it fires, and its event gets a
# decision), and a backlog of both kinds: deliveries that failed while
# the receiver was down, and deliveries never tried while the workers
# served another database.  Its channels then point at a second receiver,
# which is up from there on: pg_upgrade --check, then pg_upgrade, start
# both servers in binary-upgrade mode, where pg_herald runs no worker, so
# that receiver gets nothing until the new cluster starts.  Then it gets
# every pending delivery with the webhook-id it had before the upgrade;
# the threshold rule is still firing in the same episode (no new
# rule.fired), resolves and fires again; the decision is there; the
# extension's version is the same; new rows are captured and delivered.

use strict;
use warnings;

use File::Basename qw(dirname);
use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $old_bindir = $ENV{HERALD_OLD_PG_BINDIR} // '';
if ($old_bindir eq '' || !-x "$old_bindir/postgres")
{
	plan skip_all =>
	  'no older PostgreSQL with pg_herald (HERALD_OLD_PG_BINDIR; bash test/run --pg upgrade)';
}

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $conf = "shared_preload_libraries = 'pg_herald'\n"
  . "herald.database = 'postgres'\n";

my $old = PostgreSQL::Test::Cluster->new('old', install_path => dirname($old_bindir));
my $new = PostgreSQL::Test::Cluster->new('new');
$old->init;
$old->append_conf('postgresql.conf', $conf);
$old->start;
my $old_major = $old->pg_version->major;
my $new_major = $new->pg_version->major;
ok($old_major < $new_major, "pg_upgrade from PostgreSQL $old_major to $new_major");

my $receiver = HeraldTest::start_receiver($old);

# The pending deliveries to channel hook, "id webhook-id" per line.
sub pending_hook
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q(
SELECT d.id || ' ' || herald.webhook_id(d.id)
  FROM herald.deliveries d
 WHERE d.channel = 'hook' AND d.status = 'pending' ORDER BY d.id));
}

# ---- the old cluster: rules fire, a decision ----
$old->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'hook', kind => 'webhook',
                             target => '$receiver->{url}/hook',
                             retry_delay => '1 second', max_attempts => 100);
SELECT herald.create_channel(name => 'alerts', kind => 'webhook',
                             target => '$receiver->{url}/alerts');
SELECT herald.on_change(name => 'big_orders', on_table => 'orders',
                        channels => ARRAY['hook'], operations => '{INSERT}',
                        condition => 'NEW.amount > 100');
SELECT herald.on_threshold(name => 'many_big', op => '>', threshold => 2,
                           metric => 'SELECT count(*) FROM public.orders WHERE amount > 100',
                           watch => ARRAY['orders'::regclass], channels => ARRAY['alerts']);
INSERT INTO orders VALUES (1, 5000), (2, 6000), (3, 7000), (4, 50);
));
is($old->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => $timeout),
	't', 'old cluster: the first events are delivered');
my $fired = $old->safe_psql('postgres',
	"SELECT id FROM herald.events WHERE rule = 'many_big' AND type = 'rule.fired'");
ok($fired =~ /^\d+$/, 'old cluster: the threshold rule fired once');
$old->safe_psql('postgres', "SELECT herald.decide($fired, 'ship them today')");
my $episode = $old->safe_psql('postgres',
	"SELECT state || ' ' || since FROM herald.rules WHERE name = 'many_big'");
like($episode, qr/^firing /, 'old cluster: the threshold rule is firing');
is($old->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => $timeout),
	't', 'old cluster: the decision is announced');

# ---- the backlog: the receiver down, then the workers elsewhere ----
HeraldTest::stop_receiver($receiver);
$old->safe_psql('postgres', 'INSERT INTO orders VALUES (5, 800), (6, 900)');
$old->poll_query_until('postgres', q(
SELECT count(*) = 2 FROM herald.deliveries
 WHERE channel = 'hook' AND status = 'pending' AND attempts > 0))
  or die 'the deliveries to the stopped receiver were not tried';
pass('old cluster: two deliveries failed while the receiver was down');

$old->safe_psql('postgres', 'CREATE DATABASE elsewhere');
$old->append_conf('postgresql.conf', "herald.database = 'elsewhere'\n");
$old->restart;
my $receiver2 = HeraldTest::start_receiver($new);
$old->safe_psql('postgres', qq(
SELECT herald.alter_channel(name => 'hook', target => '$receiver2->{url}/hook');
SELECT herald.alter_channel(name => 'alerts', target => '$receiver2->{url}/alerts');
INSERT INTO orders VALUES (7, 300), (8, 400);
));
my $backlog = pending_hook($old);
my @backlog = split /\n/, $backlog;
is( $old->safe_psql('postgres', q(
SELECT count(*) FILTER (WHERE attempts > 0) || ' ' || count(*) FILTER (WHERE attempts = 0)
  FROM herald.deliveries WHERE channel = 'hook' AND status = 'pending')),
	'2 2', 'old cluster: a backlog of 2 failed and 2 untried deliveries');
my $before = $old->safe_psql('postgres', q(
SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_herald') || ' ' ||
       (SELECT max(id) FROM herald.events) || ' ' ||
       (SELECT count(*) FROM herald.events)));
$old->stop;
# What pg_upgrade starts serves the database again: were a worker to run in
# binary-upgrade mode, it would deliver the backlog there.
$old->append_conf('postgresql.conf', "herald.database = 'postgres'\n");

# ---- pg_upgrade ----
$new->init;
$new->append_conf('postgresql.conf', $conf);
chdir $PostgreSQL::Test::Utils::tmp_check;
my @upgrade = (
	'pg_upgrade', '--no-sync',
	'--old-datadir' => $old->data_dir,
	'--new-datadir' => $new->data_dir,
	'--old-bindir' => $old_bindir,
	'--new-bindir' => $new->config_data('--bindir'),
	'--socketdir' => $new->host,
	'--old-port' => $old->port,
	'--new-port' => $new->port);
command_ok([ @upgrade, '--check' ], 'pg_upgrade --check accepts the cluster');
command_ok([@upgrade], 'pg_upgrade upgrades the cluster');
is(HeraldTest::receiver_lines($receiver2), 0,
	'nothing was delivered while pg_upgrade ran the servers');

# ---- the new cluster ----
$new->start;
is($new->safe_psql('postgres', q(
SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_herald') || ' ' ||
       (SELECT max(id) FROM herald.events) || ' ' ||
       (SELECT count(*) FROM herald.events))),
	$before, 'new cluster: the same extension version and events');
my $backlog_ids = join ',', map { (split / /)[0] } @backlog;
is( $new->safe_psql('postgres', qq(
SELECT string_agg(id || ' ' || herald.webhook_id(id), E'\\n' ORDER BY id)
  FROM herald.deliveries WHERE id IN ($backlog_ids))),
	$backlog, 'new cluster: the backlog is there, with its webhook-ids');
is($new->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => $timeout),
	't', 'new cluster: herald.flush() completes');

my %expected = map { (split / /)[1] => 1 } @backlog;
my %got;
$got{ $_->{webhook_id} }++ foreach @{ HeraldTest::received($receiver2, '/hook') };
is_deeply([ sort keys %got ], [ sort keys %expected ],
	'new cluster: the receiver got every pending delivery, with its webhook-id');
is( $new->safe_psql('postgres',
		"SELECT count(*) FROM herald.deliveries WHERE status <> 'delivered'"),
	0, 'new cluster: no delivery is left pending or dead');

is($new->safe_psql('postgres',
		"SELECT state || ' ' || since FROM herald.rules WHERE name = 'many_big'"),
	$episode, 'new cluster: the threshold rule is in the same episode');
is( $new->safe_psql('postgres',
		"SELECT count(*) FROM herald.events WHERE rule = 'many_big' AND type = 'rule.fired'"),
	1, 'new cluster: it did not fire again');
is( $new->safe_psql('postgres',
		"SELECT event_id || ' ' || decision FROM herald.decisions WHERE rule = 'many_big'"),
	"$fired ship them today", 'new cluster: the decision is there');

# the threshold rule resolves, then fires again; new rows are delivered
$new->safe_psql('postgres', 'DELETE FROM orders WHERE amount > 100');
is($new->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => $timeout),
	't', 'new cluster: the rule is evaluated after the delete');
is($new->safe_psql('postgres', "SELECT state FROM herald.rules WHERE name = 'many_big'"),
	'ok', 'new cluster: the threshold rule resolved');
$new->safe_psql('postgres', 'INSERT INTO orders VALUES (9, 1000), (10, 2000), (11, 3000)');
is($new->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => $timeout),
	't', 'new cluster: the new events are delivered');
is($new->safe_psql('postgres', "SELECT state FROM herald.rules WHERE name = 'many_big'"),
	'firing', 'new cluster: the threshold rule fires again');

my @alerts = map { $_->{event_id} } @{ HeraldTest::received($receiver2, '/alerts') };
my $alert_events = $new->safe_psql('postgres', qq(
SELECT string_agg(id::text, ' ' ORDER BY id) FROM herald.events
 WHERE rule = 'many_big' AND id > $fired AND type IN ('rule.resolved', 'rule.fired')));
is(join(' ', sort { $a <=> $b } grep { defined } @alerts), $alert_events,
	'new cluster: the resolution and the new firing reached the receiver');
is(scalar(@{ HeraldTest::received($receiver2, '/hook') }) - scalar(keys %expected), 3,
	'new cluster: the new rows were captured and delivered');

HeraldTest::no_server_errors($new);

$new->stop;
HeraldTest::stop_receiver($receiver2);

done_testing();
