# A channel's max_concurrency lowered below what is in flight.
#
# Four requests to a slow endpoint are in flight when the channel's
# max_concurrency goes from 4 to 1: the channel then has more in flight
# than it may, and every channel the worker tracks is at its limit.  A
# new event for it must wait, without an error, until the requests in
# flight are answered, then go out alone (the new limit holds).  Once, the
# read of new events asked for a negative number of them ("LIMIT must not
# be negative"), so every claim failed, and the worker retried at every
# wake-up.

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
my $node = HeraldTest::new_node('lowered', "herald.delivery_workers = 1\n");
my $receiver = HeraldTest::start_receiver($node);

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
SELECT herald.create_channel(name => 'slow', kind => 'webhook',
                             target => '$receiver->{url}/slow?delay_ms=3000',
                             max_concurrency => 4);
));

# four at once, all in flight
$node->safe_psql('postgres',
	q(SELECT herald.test_channel('slow') FROM generate_series(1, 4)));
# in flight: arrived at the receiver, which answers only after the delay
my $deadline = time() + $timeout;
sleep 0.05
  while HeraldTest::receiver_arrivals($receiver, '/slow') < 4 && time() < $deadline;
is(HeraldTest::receiver_arrivals($receiver, '/slow'), 4, 'four requests are in flight');

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q(
SELECT herald.alter_channel('slow', max_concurrency => 1);
SELECT herald.test_channel('slow');
));
is($node->safe_psql('postgres', q(SELECT herald.flush('60 seconds'))),
	't', 'herald.flush() returns once all five are delivered');
is( $node->safe_psql('postgres', q(
SELECT string_agg(status, ' ') FROM herald.deliveries)),
	'delivered delivered delivered delivered delivered',
	'all five are delivered');

# The fifth started after the first four had their answers.
is( $node->safe_psql('postgres', q(
WITH a AS (SELECT delivery_id, started_at,
                  started_at + latency_ms * interval '1 millisecond' AS ended_at,
                  rank() OVER (ORDER BY delivery_id) AS n
             FROM herald.attempts)
SELECT (SELECT started_at FROM a WHERE n = 5)
       >= (SELECT min(ended_at) FROM a WHERE n <= 4))),
	't', 'the fifth waited for the requests in flight');

my @errors = HeraldTest::server_log($node, $log_offset, qr/\b(?:ERROR|FATAL):/);
is(scalar(@errors), 0, 'the worker logs no error meanwhile')
  or diag(join "\n", @errors[0 .. ($#errors < 4 ? $#errors : 4)]);

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
