# A standby promoted after its primary dies delivers every committed event,
# and does nothing of pg_herald's while it is a standby.
#
# A primary with pg_herald streams to a hot standby (a base backup, then
# streaming replication).  A row rule's webhook endpoint answers after a
# short delay, so that many of its 20,000 deliveries are in flight; a
# threshold rule on the same table fires and gets a decision.  Meanwhile
# the standby runs no pg_herald worker, and herald.flush() there refuses
# with a clear error.  Once a quarter of the deliveries has arrived and the
# standby has replayed everything, the primary stops with -m immediate:
# for as long as nobody promotes the standby, nothing reaches the
# receiver.  Then the standby is promoted.  Its workers start by
# themselves and deliver every event at least once (a delivery in flight
# at the stop may arrive twice: the test counts those, and every copy must
# carry the delivery's one webhook-id); the threshold rule's episode goes
# on (it does not fire again, its decision is there, and it resolves on the
# new primary when the rows go).
#
# Replication here is asynchronous: what the standby had not replayed when
# the primary died is not on it.  The test waits for the standby to catch
# up first, as synchronous replication would ensure (see "Failover" in the
# README).

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
my $stop_after = $events / 4;    # receipts before the primary stops
my $delay_ms = 2;
my $started = time();

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_herald'\n" . "herald.database = 'postgres'\n");
$primary->start;
my $receiver = HeraldTest::start_receiver($primary);

$primary->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'hook', kind => 'webhook',
                             target => '$receiver->{url}/orders?delay_ms=$delay_ms',
                             timeout => '5 minutes');
SELECT herald.create_channel(name => 'alerts', kind => 'webhook',
                             target => '$receiver->{url}/alerts');
SELECT herald.on_change(name => 'orders', on_table => 'orders',
                        channels => ARRAY['hook'], operations => '{INSERT}');
SELECT herald.on_threshold(name => 'backlog', metric => 'SELECT count(*) FROM public.orders',
                           op => '>', threshold => $events / 2,
                           channels => ARRAY['alerts'], every => '1 second');
));

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# pg_herald's backends on a node: its workers, by backend_type
sub herald_workers
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_herald%'");
}

ok($primary->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 'f'
	  && $standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't',
	'a primary and a hot standby');
ok(herald_workers($primary) > 0, 'the primary runs pg_herald workers');
is(herald_workers($standby), 0, 'the standby runs no pg_herald worker');
my ($ret, $out, $err) =
  $standby->psql('postgres', "SELECT herald.flush('1 second')");
my $refused_at = -s $standby->logfile;    # the one error on purpose
ok($ret != 0 && $err =~ /pg_herald's workers do not serve database "postgres"/
	  && $err =~ /The server is a standby: the workers start when it is promoted/,
	'herald.flush() on the standby refuses, saying why')
  or diag("exit $ret: $err");

my $t0 = time();
$primary->safe_psql('postgres',
	"INSERT INTO orders SELECT g, g FROM generate_series(1, $events) g");
note(sprintf('%d events committed in %.1f s', $events, time() - $t0));

# The threshold rule fires on the primary, and its event gets a decision.
$primary->poll_query_until('postgres',
	"SELECT state = 'firing' FROM herald.rules WHERE name = 'backlog'")
  or die 'the threshold rule did not fire';
my $fired = $primary->safe_psql('postgres',
	"SELECT id FROM herald.events WHERE rule = 'backlog' AND type = 'rule.fired'");
$primary->safe_psql('postgres',
	"SELECT herald.decide($fired, 'the backlog is the nightly import')");

# A quarter of the row rule's deliveries arrive.
my $deadline = time() + $timeout;
while (scalar(@{ HeraldTest::received($receiver, '/orders') }) < $stop_after
	&& time() < $deadline)
{
	sleep 0.05;
}

# The standby has everything committed so far; its workers still do nothing.
$primary->wait_for_catchup($standby, 'replay');
my ($delivered, $pending) = split /\|/, $primary->safe_psql('postgres', q(
SELECT count(*) FILTER (WHERE status = 'delivered'),
       count(*) FILTER (WHERE status = 'pending')
  FROM herald.deliveries WHERE channel = 'hook'));
is(herald_workers($standby), 0, 'the standby runs no pg_herald worker during the drain');
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM herald.events WHERE rule = 'orders'"),
	$events, 'the standby has every event');

$primary->stop('immediate');
my $at_stop = HeraldTest::receiver_lines($receiver);
note(sprintf('primary stopped after %.1f s: %d delivered, %d pending',
		time() - $t0, $delivered, $pending));
ok($pending > 0, 'the primary stops in the middle of the drain');

# While nobody promotes it, the standby sends nothing, claims nothing and
# evaluates nothing: the receiver gets nothing for a few seconds, and the
# threshold rule's last evaluation does not move.
my $evaluated = $standby->safe_psql('postgres',
	"SELECT last_evaluated_at FROM herald.rules WHERE name = 'backlog'");
sleep 3;
is(HeraldTest::receiver_lines($receiver) - $at_stop, 0,
	'nothing reaches the receiver while the standby is not promoted');
is($standby->safe_psql('postgres',
		"SELECT last_evaluated_at FROM herald.rules WHERE name = 'backlog'"),
	$evaluated, 'the standby evaluates no rule');
is(herald_workers($standby), 0, 'the standby still runs no pg_herald worker');

my $log_offset = -s $standby->logfile;
$standby->promote;
$standby->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type LIKE 'pg_herald%'")
  or die 'no pg_herald worker started after the promotion';
pass('pg_herald workers start by themselves after the promotion');

$t0 = time();
is( $standby->safe_psql('postgres', "SELECT herald.flush('150 seconds')",
		timeout => 150 + $timeout),
	't', 'herald.flush() completes on the new primary');
note(sprintf('the rest drained in %.1f s after the promotion', time() - $t0));
note("new primary's log: $_")
  foreach HeraldTest::server_log($standby, $log_offset,
	qr/released \d+ leased deliveries/);

is( $standby->safe_psql('postgres',
		"SELECT status || ' ' || count(*) FROM herald.deliveries"
		  . " WHERE channel = 'hook' GROUP BY status"),
	"delivered $events",
	'every delivery is delivered on the new primary, none pending or dead');

my %webhook_id = map { split /\|/ } split /\n/,
  $standby->safe_psql('postgres',
	"SELECT event_id, webhook_id FROM herald.deliveries WHERE channel = 'hook'");
my (%count, %ids);
foreach my $r (@{ HeraldTest::received($receiver, '/orders') })
{
	my $id = $r->{event_id} // 'none';
	$count{$id}++;
	$ids{$id}{ $r->{webhook_id} } = 1;
}
my @event_ids = split /\n/,
  $standby->safe_psql('postgres', "SELECT id FROM herald.events WHERE rule = 'orders'");
my @missing = grep { !$count{$_} } @event_ids;
is(scalar(@missing), 0, 'the receiver got every event at least once')
  or diag("missing (first 20): @missing[0 .. ($#missing < 19 ? $#missing : 19)]");
my %known = map { $_ => 1 } @event_ids;
is(scalar(grep { !$known{$_} } keys %count), 0, 'and no event that is not the rule\'s');
my @wrong_id = grep {
	keys %{ $ids{$_} } != 1 || !exists $ids{$_}{ $webhook_id{$_} // '' }
} grep { $known{$_} } keys %count;
is(scalar(@wrong_id), 0, 'every copy of a delivery carries its one webhook-id');
my @repeated = grep { $count{$_} > 1 } keys %count;
note(sprintf('%d of %d events arrived more than once (in flight when the primary stopped, '
		  . 'or delivered after the standby had last replayed the outcomes)',
		scalar(@repeated), scalar(keys %count)));

# The threshold rule's episode goes on: still firing, not fired again, its
# decision kept; it is evaluated again and resolves when the rows go.
is( $standby->safe_psql('postgres', q(
SELECT state || ' ' || (SELECT count(*) FROM herald.events
                         WHERE rule = 'backlog' AND type = 'rule.fired')
  FROM herald.rules WHERE name = 'backlog')),
	'firing 1', 'the threshold rule is still firing, and fired once');
is( $standby->safe_psql('postgres',
		"SELECT decision FROM herald.decisions WHERE event_id = $fired"),
	'the backlog is the nightly import', 'the decision recorded before the promotion is there');
$standby->poll_query_until('postgres', qq(
SELECT last_evaluated_at > '$evaluated' FROM herald.rules WHERE name = 'backlog'))
  or die 'the threshold rule is not evaluated after the promotion';
pass('the threshold rule is evaluated on the new primary');
$standby->safe_psql('postgres', "DELETE FROM orders WHERE id > $events / 4");
$standby->poll_query_until('postgres',
	"SELECT state = 'ok' FROM herald.rules WHERE name = 'backlog'")
  or die 'the threshold rule did not resolve';
is($standby->safe_psql('postgres', "SELECT herald.flush('60 seconds')"),
	't', 'the resolution is delivered');
my %alerted = map { ($_->{event_id} // '') => 1 } @{ HeraldTest::received($receiver, '/alerts') };
is( $standby->safe_psql('postgres', q(
SELECT string_agg(type, ' ' ORDER BY id) FROM herald.events
 WHERE rule = 'backlog' AND type LIKE 'rule.%')),
	'rule.fired rule.resolved', 'the episode: fired on the old primary, resolved on the new');
my @episode = split /\n/, $standby->safe_psql('postgres',
	"SELECT id FROM herald.events WHERE rule = 'backlog' AND type IN ('rule.fired', 'rule.resolved')");
is(scalar(grep { $alerted{$_} } @episode), 2, 'both reached the alerts endpoint')
  or diag('event ids at /alerts: ' . join(' ', sort keys %alerted));

HeraldTest::no_server_errors($standby, $refused_at);
$standby->stop('fast');
HeraldTest::stop_receiver($receiver);
note(sprintf('total run time %.1f s', time() - $started));

done_testing();
