# Committed events survive a server stop in the middle of delivery.
#
# 200 rows are inserted in one statement on a table watched by a row rule
# whose webhook endpoint answers slowly, and the server is stopped at once,
# while those deliveries are queued or in flight: first with an immediate
# stop (no shutdown checkpoint, like a crash), then with a fast stop.  After
# the restart every event must be delivered (at least once: a delivery that
# was in flight may be repeated with the same webhook-id).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $rows = 200;

my $node = HeraldTest::new_node('main');

my $receiver = HeraldTest::start_receiver($node);
my $url = $receiver->{url};

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'hook', kind => 'webhook',
                             target => '$url/hook?delay_ms=200');
SELECT herald.on_change(name => 'orders', on_table => 'orders',
                        channels => ARRAY['hook']);
));

# Event ids found in the receiver log, with how many times each arrived.
sub received_event_ids
{
	my %seen;
	foreach my $request (@{ HeraldTest::received($receiver, '/hook') })
	{
		$seen{ $request->{event_id} }++ if defined $request->{event_id};
	}
	return \%seen;
}

my $expected_total = 0;
my $first_id = 1;
foreach my $mode ('immediate', 'fast')
{
	$node->safe_psql('postgres',
		"INSERT INTO orders SELECT g, g * 10 FROM generate_series($first_id, "
		  . ($first_id + $rows - 1) . ") g");
	$expected_total += $rows;
	$first_id += $rows;

	$node->stop($mode);
	$node->start;

	my $flushed = $node->safe_psql('postgres',
		"SELECT herald.flush('60 seconds')",
		timeout => $timeout);
	is($flushed, 't', "$mode stop: herald.flush() completes after the restart");

	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM herald.events WHERE type = 'row.inserted'"),
		$expected_total,
		"$mode stop: every committed row change is an event");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM herald.deliveries WHERE status = 'delivered'"),
		$expected_total,
		"$mode stop: every delivery is delivered");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM herald.deliveries WHERE status <> 'delivered'"),
		0,
		"$mode stop: no delivery is left pending or dead");

	my @event_ids = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT id FROM herald.events WHERE type = 'row.inserted' ORDER BY id");
	my $seen = received_event_ids();
	my @missing = grep { !$seen->{$_} } @event_ids;
	is(scalar(@missing), 0,
		"$mode stop: the receiver got every event at least once")
	  or diag("missing event ids: @missing[0 .. ($#missing < 19 ? $#missing : 19)]");
	my %known = map { $_ => 1 } @event_ids;
	my @unknown = grep { !$known{$_} } keys %$seen;
	is(scalar(@unknown), 0,
		"$mode stop: the receiver got no event that is not in herald.events")
	  or diag("unknown event ids: @unknown");

	my $repeated = grep { $seen->{$_} > 1 } keys %$seen;
	note("$mode stop: $repeated of "
		  . scalar(keys %$seen)
		  . " events were received more than once");
}

HeraldTest::no_server_errors($node);

$node->stop('fast');
HeraldTest::stop_receiver($receiver);

done_testing();
