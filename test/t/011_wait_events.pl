# What each pg_herald process waits for, as pg_stat_activity shows it.
#
# On PostgreSQL 17 and later each wait has its own custom wait event
# (wait_event_type Extension): an idle delivery worker HeraldDeliveryIdle,
# one with a request in flight HeraldDeliveryHttp, the scheduler
# HeraldSchedulerIdle, the HTTP worker HeraldHttpServer, and a session in
# herald.flush() HeraldFlushDeliveries while the request it waits for is
# in flight.  Before 17 all of them show the generic "Extension".

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = HeraldTest::new_node('waits',
	"herald.delivery_workers = 1\n" . "herald.http_listen = '127.0.0.1:$port'\n");
my $receiver = HeraldTest::start_receiver($node);
my $named = $node->safe_psql('postgres', 'SHOW server_version_num') >= 170000;

# The wait event a pg_stat_activity row must show: its name, or the
# generic one before 17.
sub expected { return $named ? $_[0] : 'Extension'; }

# Wait until the process matching $where waits on $event; one assertion.
sub waits_on
{
	my ($where, $event, $what) = @_;
	my $want = expected($event);
	ok( $node->poll_query_until('postgres', qq(
SELECT wait_event_type || ' ' || wait_event FROM pg_stat_activity WHERE $where),
			"Extension $want"),
		"$what waits on $want")
	  or diag($node->safe_psql('postgres', qq(
SELECT backend_type, wait_event_type, wait_event, state
  FROM pg_stat_activity WHERE $where)));
	return;
}

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY);
SELECT herald.create_channel(name => 'slow', kind => 'webhook',
                             target => '$receiver->{url}/hook?delay_ms=4000');
SELECT herald.on_change(name => 'orders', on_table => 'orders',
                        channels => ARRAY['slow'], operations => '{INSERT}');
));

waits_on("backend_type = 'pg_herald delivery'", 'HeraldDeliveryIdle',
	'the idle delivery worker');
waits_on("backend_type = 'pg_herald scheduler'", 'HeraldSchedulerIdle',
	'the scheduler');
waits_on("backend_type = 'pg_herald http'", 'HeraldHttpServer',
	'the HTTP worker');

# A request the receiver answers after 4 s, and a session that flushes
# meanwhile: the worker waits for the answer, the session for the worker.
$node->safe_psql('postgres', 'INSERT INTO orders VALUES (1)');
my ($out, $err) = ('', '');
my $flush = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'),
		'-c', "SET application_name = 'flusher'",
		'-c', "SELECT herald.flush('60 seconds')"
	],
	'>', \$out, '2>', \$err,
	IPC::Run::timeout(3 * $timeout));
waits_on("backend_type = 'pg_herald delivery'", 'HeraldDeliveryHttp',
	'the delivery worker with a request in flight');
waits_on("application_name = 'flusher'", 'HeraldFlushDeliveries',
	'a session in herald.flush()');
$flush->finish;
is($out, "t\n", 'herald.flush() returns once the request is answered')
  or diag($err);
is( $node->safe_psql('postgres',
		"SELECT status FROM herald.deliveries"),
	'delivered', 'the slow request was delivered');

waits_on("backend_type = 'pg_herald delivery'", 'HeraldDeliveryIdle',
	'the delivery worker, idle again');

# On 17 and later each name is registered once for the cluster, by the
# first process that waits so.
SKIP:
{
	skip 'custom wait events need PostgreSQL 17', 1 unless $named;
	is( $node->safe_psql('postgres', q(
SELECT string_agg(name || ' ' || type, ', ' ORDER BY name) FROM pg_wait_events
 WHERE name IN ('HeraldDeliveryHttp', 'HeraldDeliveryIdle', 'HeraldFlushDeliveries',
                'HeraldHttpServer', 'HeraldSchedulerIdle'))),
		'HeraldDeliveryHttp Extension, HeraldDeliveryIdle Extension,'
		  . ' HeraldFlushDeliveries Extension, HeraldHttpServer Extension,'
		  . ' HeraldSchedulerIdle Extension',
		'pg_wait_events lists them, once each');
}

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
