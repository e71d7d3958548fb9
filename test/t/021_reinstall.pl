# DROP EXTENSION and CREATE EXTENSION while requests are in flight.
#
# The old installation has 30 requests in flight to a receiver that answers
# after 10 seconds (time enough for the reinstall on a slow build).  The
# extension is dropped and created again, and the new one queues 30
# deliveries with the same ids (1 to 30) to a receiver that answers after
# 12 seconds, claimed by the same worker before the old requests end.  The
# old outcomes must not be recorded on the new deliveries: each new delivery
# is recorded from its own request (the response "new", started after it was
# created), and the webhook-ids of the two installations never repeat,
# although the delivery ids do.  An installation updated from 0.1.0 keeps
# its webhook-ids.

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
my $n = 30;
my $node = HeraldTest::new_node('main', '');
my $receiver = HeraldTest::start_receiver($node);

# an installation, with $n requests in flight to a slow receiver
sub install
{
	my ($path, $delay_ms, $first) = @_;
	$node->safe_psql('postgres', qq(
SELECT herald.create_channel(name => '$path', kind => 'webhook', max_concurrency => 100,
                             target => '$receiver->{url}/$path?delay_ms=$delay_ms&body=$path');
SELECT herald.on_change(name => '$path', on_table => 'orders', channels => ARRAY['$path'],
                        operations => ARRAY['INSERT']);
INSERT INTO orders SELECT g FROM generate_series($first, $first + $n - 1) g;
));
	# in flight: arrived at the receiver, which answers only after the delay
	my $deadline = time() + $timeout;
	sleep 0.05
	  while HeraldTest::receiver_arrivals($receiver, "/$path") < $n && time() < $deadline;
	is(HeraldTest::receiver_arrivals($receiver, "/$path"), $n,
		"the $n deliveries to /$path are in flight");
	return split /\n/, $node->safe_psql('postgres',
		'SELECT id || \' \' || webhook_id FROM herald.deliveries ORDER BY id');
}

$node->safe_psql('postgres', q(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY);
));
my @old = install('old', 10000, 1);
my $old_installation = $node->safe_psql('postgres', 'SELECT id FROM herald.installation');

$node->safe_psql('postgres', q(
DROP EXTENSION pg_herald CASCADE;
CREATE EXTENSION pg_herald;
));
my @new = install('new', 12000, 1000);
is(scalar(@{ HeraldTest::received($receiver, '/old') }), 0,
	'the old requests were still in flight when the new deliveries were claimed');
isnt($node->safe_psql('postgres', 'SELECT id FROM herald.installation'), $old_installation,
	'the new installation has an id of its own');
is(join(',', map { (split / /)[0] } @new), join(',', map { (split / /)[0] } @old),
	'the new installation numbers its deliveries as the old one did');
my %old_ids = map { ((split / /)[1] => 1) } @old;
is(scalar(grep { $old_ids{ (split / /)[1] } } @new), 0,
	'no webhook-id of the new installation repeats one of the old');

is($node->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => 60 + $timeout),
	't', 'the new deliveries complete');
is( $node->safe_psql('postgres', q(
SELECT count(*) FROM herald.deliveries WHERE status = 'delivered' AND attempts = 1)),
	$n, 'each new delivery is delivered after one attempt');
is( $node->safe_psql('postgres', q(
SELECT count(*) FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE a.response = 'new' AND a.started_at >= d.created_at)),
	$n, 'every attempt recorded is the new request\'s, none of the old installation');

my $old_received = HeraldTest::received($receiver, '/old');
my $new_received = HeraldTest::received($receiver, '/new');
is(scalar(@$old_received), $n, 'the old requests reached their receiver');
is( join(',', sort map { $_->{webhook_id} } @$new_received),
	join(',', sort map { (split / /)[1] } @new),
	'the new requests carry the webhook-ids of the new deliveries');
my %sent = map { ($_->{webhook_id} => 1) } @$old_received;
is(scalar(grep { $sent{ $_->{webhook_id} } } @$new_received), 0,
	'the receiver never saw a webhook-id twice');

# An installation updated from 0.1.0 keeps the webhook-ids its deliveries
# had: 0.1.0 made them from the schema's OID.
$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('upgraded', "CREATE EXTENSION pg_herald VERSION '0.1.0'");
my $before = $node->safe_psql('upgraded', 'SELECT herald.webhook_id(7)');
like($before, qr/^msg_\d+_7$/, '0.1.0 makes a webhook-id');
$node->safe_psql('upgraded', 'ALTER EXTENSION pg_herald UPDATE');
is($node->safe_psql('upgraded', 'SELECT herald.webhook_id(7)'), $before,
	'the updated installation keeps its webhook-ids');

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
done_testing();
