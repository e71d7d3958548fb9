# Several delivery workers share the events without sharing a delivery.
#
# With herald.delivery_workers = 2, 10,000 rows are inserted in one
# statement on a table watched by a row rule.  Both workers must run and
# both must take part in the drain (worker k delivers the events whose
# id % 2 = k, and keeps its own position), and in normal operation a
# delivery is never sent by both: every event reaches the receiver exactly
# once, and no webhook-id arrives twice.

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
my $events = 10_000;
my $workers = 2;
my $delay_ms = 2;    # the receiver's answer time: requests overlap

my $started = time();
my $node = HeraldTest::new_node('main', "herald.delivery_workers = $workers\n");

ok( $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity"
		  . " WHERE backend_type = 'pg_herald delivery'",
		$workers),
	"$workers delivery workers appear in pg_stat_activity");

my $receiver = HeraldTest::start_receiver($node);
$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'hook', kind => 'webhook',
                             target => '$receiver->{url}/hook?delay_ms=$delay_ms');
SELECT herald.on_change(name => 'orders', on_table => 'orders',
                        channels => ARRAY['hook'], operations => '{INSERT}');
));

my $t0 = time();
$node->safe_psql('postgres',
	"INSERT INTO orders SELECT g, g FROM generate_series(1, $events) g");

my $flushed = $node->safe_psql('postgres', "SELECT herald.flush('120 seconds')",
	timeout => 120 + $timeout);
is($flushed, 't', 'herald.flush() completes');
note(sprintf('%d deliveries drained in %.1f s (%.0f/s) by %d workers',
	$events, time() - $t0, $events / (time() - $t0), $workers));

# Worker k of 2 delivers the events whose id % 2 = k: each keeps its own
# position in the event log, and both reach the last event of their share.
ok( $node->poll_query_until('postgres', qq(
SELECT count(*) FROM herald.delivery_cursors c
 WHERE c.workers = $workers
   AND c.position >= (SELECT max(e.id) FROM herald.event_log e WHERE e.id % $workers = c.slot)),
		$workers),
	"each of the $workers workers read its share of the events to the end");
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT d.event_id % $workers) FROM herald.deliveries d"),
	$workers, "both shares were delivered");

is( $node->safe_psql('postgres',
		"SELECT status || ' ' || count(*) FROM herald.deliveries GROUP BY status"),
	"delivered $events",
	'every delivery is delivered, none pending or dead');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM herald.deliveries WHERE attempts <> 1"),
	0,
	'every delivery took exactly one attempt');

# What the database says each event's delivery is, and what arrived.
my %webhook_id = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres',
	"SELECT event_id, webhook_id FROM herald.deliveries");
my (%by_event, %by_webhook_id);
foreach my $r (@{ HeraldTest::received($receiver, '/hook') })
{
	$by_event{ $r->{event_id} // 'none' }++;
	$by_webhook_id{ $r->{webhook_id} }++;
}

my @event_ids = split /\n/,
  $node->safe_psql('postgres', 'SELECT id FROM herald.events');
is(scalar(@event_ids), $events, 'every committed row change is an event');
my @missing = grep { !$by_event{$_} } @event_ids;
is(scalar(@missing), 0, 'the receiver got every event')
  or diag("missing event ids (first 20): @missing[0 .. ($#missing < 19 ? $#missing : 19)]");
my @twice = grep { $by_event{$_} > 1 } keys %by_event;
is(scalar(@twice), 0, 'the receiver got no event twice')
  or diag("events received more than once (first 20): @twice[0 .. ($#twice < 19 ? $#twice : 19)]");
my %known = map { $_ => 1 } @event_ids;
my @unknown = grep { !$known{$_} } keys %by_event;
is(scalar(@unknown), 0, 'the receiver got no event that is not in herald.events')
  or diag("unknown event ids: @unknown");
my @duplicate_ids = grep { $by_webhook_id{$_} > 1 } keys %by_webhook_id;
is(scalar(@duplicate_ids), 0, 'no webhook-id arrived twice')
  or diag("duplicate webhook-ids (first 20): @duplicate_ids[0 .. ($#duplicate_ids < 19 ? $#duplicate_ids : 19)]");
my %expected_ids = map { $_ => 1 } values %webhook_id;
is(scalar(grep { $expected_ids{$_} } keys %by_webhook_id),
	$events, "the $events webhook-ids received are the deliveries' own");

my $requests = 0;
$requests += $_ foreach values %by_webhook_id;
note(sprintf('%d requests received; total run time %.1f s',
	$requests, time() - $started));

HeraldTest::no_server_errors($node);

$node->stop('fast');
HeraldTest::stop_receiver($receiver);

done_testing();
