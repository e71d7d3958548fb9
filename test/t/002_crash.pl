# No committed event is lost when the server crashes in the middle of a
# large drain.
#
# 20,000 rows are inserted in one statement on a table watched by a row
# rule; its webhook endpoint answers after a short delay, so that many
# deliveries are leased and in flight at any moment.  Once a quarter of
# them has reached the receiver, the server goes down:
#
#   immediate: pg_ctl stop -m immediate, then start (no shutdown checkpoint,
#              like a power cut for the database);
#   kill9:     kill -9 of the delivery worker, after which the postmaster
#              terminates every backend and reinitializes (crash recovery).
#
# After the restart herald.flush() must finish well before the crashed
# worker's leases would have expired (the channel timeout plus a minute):
# the restarted worker releases them at once.  Every event must then have
# reached the receiver at least once, and nothing be left pending or dead.
# A delivery that was in flight at the crash may arrive twice: the test
# reports how many did, and checks that every copy carries the delivery's
# one webhook-id and that no delivery durably recorded as delivered before
# the crash was sent again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $events = 20_000;
my $crash_after = $events / 4;    # receipts before the crash
my $delay_ms = 2;                 # the receiver's answer time
# herald.flush() after the restart: generous for well under a minute of
# work, yet shorter than a lease (the channel timeout, 5 minutes here, plus
# 1 minute), so that it fails if the crashed worker's leases are left to
# expire instead of being released.
my $flush_seconds = 150;

my $started = time();
# PostgreSQL::Test::Cluster turns restart_after_crash off; a crashed worker
# must restart the server as it would in production
my $node = HeraldTest::new_node('main', "restart_after_crash = on\n");

my $receiver = HeraldTest::start_receiver($node);
$node->safe_psql('postgres', 'CREATE EXTENSION pg_herald');

# Poll until the receiver has logged at least $lines requests in all.
sub wait_for_receipts
{
	my ($lines) = @_;
	my $deadline = time() + $timeout;
	my $got;

	while (($got = HeraldTest::receiver_lines($receiver)) < $lines
		&& time() < $deadline)
	{
		sleep 0.02;
	}
	return $got;
}

# The delivery workers' PIDs, from pg_stat_activity.
sub worker_pids
{
	return split /\n/,
	  $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity"
		  . " WHERE backend_type = 'pg_herald delivery' ORDER BY pid");
}

my %crash = (
	immediate => sub {
		$node->stop('immediate');
		$node->start;
	},
	kill9 => sub {
		my @pids = worker_pids();
		is(scalar(@pids), 1, 'kill9: one delivery worker to kill');
		my $log_offset = -s $node->logfile;
		note("kill9: killing delivery worker @pids");
		kill 'KILL', @pids;
		ok( eval {
				$node->wait_for_log(
					qr/all server processes terminated; reinitializing/,
					$log_offset);
				1;
			},
			'kill9: the postmaster terminates every backend and reinitializes');
		$node->poll_query_until('postgres', 'SELECT true')
		  or die 'the server did not come back after the crash';
		my $deadline = time() + $timeout;
		my @now;
		while (time() < $deadline)
		{
			@now = worker_pids();
			last if @now == 1 && $now[0] != ($pids[0] // 0);
			sleep 0.1;
		}
		ok(@now == 1 && $now[0] != ($pids[0] // 0),
			'kill9: a new delivery worker runs after the crash')
		  or diag("delivery workers now: @now");
	});

foreach my $name ('immediate', 'kill9')
{
	my $path = "/$name";

	$node->safe_psql('postgres', qq(
CREATE TABLE orders_$name(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'hook_$name', kind => 'webhook',
                             target => '$receiver->{url}$path?delay_ms=$delay_ms',
                             timeout => '5 minutes');
SELECT herald.on_change(name => 'orders_$name', on_table => 'orders_$name',
                        channels => ARRAY['hook_$name'], operations => '{INSERT}');
));

	my $lines_before = HeraldTest::receiver_lines($receiver);
	my $t0 = time();
	$node->safe_psql('postgres',
		"INSERT INTO orders_$name SELECT g, g FROM generate_series(1, $events) g");
	note(sprintf("%s: %d events committed in %.1f s", $name, $events, time() - $t0));

	# Let the drain get going, then see where it stands just before the
	# crash.  The ids recorded as delivered here must never be sent again.
	my $got = wait_for_receipts($lines_before + $crash_after) - $lines_before;
	my ($delivered, $pending, $in_flight) = split /\|/,
	  $node->safe_psql('postgres', qq(
SELECT count(*) FILTER (WHERE status = 'delivered'),
       count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE in_flight)
  FROM herald.deliveries WHERE channel = 'hook_$name'));
	my %done_before = map { $_ => 1 } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT event_id FROM herald.deliveries"
		  . " WHERE channel = 'hook_$name' AND status = 'delivered'");
	# The workers may commit asynchronously: an outcome seen here may still
	# be lost in the crash, and its delivery then legitimately repeated.
	# Once the WAL is flushed past where it stood after that query (the WAL
	# writer does it within wal_writer_delay), those outcomes are durable.
	# (A transaction that only takes an xid would not do: it writes no WAL
	# of its own, and PostgreSQL commits it asynchronously.)
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	$node->poll_query_until('postgres',
		"SELECT pg_current_wal_flush_lsn() >= '$lsn'::pg_lsn")
	  or die "the WAL was not flushed past $lsn";
	my $lines_at_crash = HeraldTest::receiver_lines($receiver);
	note(sprintf("%s: crash after %.1f s: %d received, %d delivered, "
		  . "%d pending of which %d in flight",
		$name, time() - $t0, $got, $delivered, $pending, $in_flight));
	# (in_flight counts the leased queue rows only: deliveries sent from
	# the event log at their first try have no row while in flight)
	ok($got >= $crash_after && $pending > 0,
		"$name: the crash comes in the middle of the drain");

	my $log_offset = -s $node->logfile;
	$crash{$name}->();

	$t0 = time();
	my $flushed = $node->safe_psql('postgres',
		"SELECT herald.flush('$flush_seconds seconds')",
		timeout => $flush_seconds + $timeout);
	is($flushed, 't', "$name: herald.flush() completes after the restart");
	note(sprintf("%s: the rest drained in %.1f s after the restart (%.0f/s)",
		$name, time() - $t0, ($events - $delivered) / (time() - $t0)));
	note("$name: server log: $_")
	  foreach HeraldTest::server_log($node, $log_offset,
		qr/released \d+ leased deliveries/);

	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM herald.events WHERE rule = 'orders_$name'"),
		$events,
		"$name: every committed row change is an event");
	is( $node->safe_psql('postgres',
			"SELECT status || ' ' || count(*) FROM herald.deliveries"
			  . " WHERE channel = 'hook_$name' GROUP BY status"),
		"delivered $events",
		"$name: every delivery is delivered, none pending or dead");

	# What the database says each event's delivery is, and what arrived.
	my %webhook_id = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT event_id, webhook_id FROM herald.deliveries"
		  . " WHERE channel = 'hook_$name'");
	my (%count, %ids, $resent_after_done);
	foreach my $r (@{ HeraldTest::received($receiver, $path) })
	{
		my $id = $r->{event_id} // 'none';
		$count{$id}++;
		$ids{$id}{ $r->{webhook_id} } = 1;
		$resent_after_done++
		  if $done_before{$id} && $r->{n} > $lines_at_crash;
	}

	my @event_ids = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT id FROM herald.events WHERE rule = 'orders_$name'");
	my @missing = sort { $a <=> $b } grep { !$count{$_} } @event_ids;
	is(scalar(@missing), 0,
		"$name: the receiver got every event at least once")
	  or diag("missing event ids (first 20): @missing[0 .. ($#missing < 19 ? $#missing : 19)]");
	my %known = map { $_ => 1 } @event_ids;
	my @unknown = grep { !$known{$_} } keys %count;
	is(scalar(@unknown), 0,
		"$name: the receiver got no event that is not one of this rule's")
	  or diag("unknown event ids: @unknown");

	my @repeated = grep { $count{$_} > 1 } keys %count;
	my $copies = 0;
	$copies += $count{$_} - 1 foreach @repeated;
	my @wrong_id = grep {
		keys %{ $ids{$_} } != 1
		  || !exists $ids{$_}{ $webhook_id{$_} // '' }
	} grep { $known{$_} } keys %count;
	is(scalar(@wrong_id), 0,
		"$name: every copy of a delivery carries its one webhook-id")
	  or diag(join "\n", map {
			"event $_: expected " . ($webhook_id{$_} // 'no delivery') . ", got "
			  . join(', ', sort keys %{ $ids{$_} })
		} @wrong_id[0 .. ($#wrong_id < 9 ? $#wrong_id : 9)]);
	is($resent_after_done // 0, 0,
		"$name: no delivery recorded as delivered before the crash is sent again");
	note(sprintf("%s: %d of %d events were received more than once "
		  . "(%d extra requests; %d deliveries were in flight just before the crash)",
		$name, scalar(@repeated), scalar(keys %count), $copies, $in_flight));
}

HeraldTest::no_server_errors($node);

$node->stop('fast');
HeraldTest::stop_receiver($receiver);
note(sprintf('total run time %.1f s', time() - $started));

done_testing();
