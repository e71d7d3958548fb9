# The network policy: herald.deny_networks is checked against the resolved
# address of every connection, and no connection is ever opened to a
# denied address.
#
# Three receivers listen on loopback addresses and note every connection
# they accept:
#   127.0.0.2  denied by address;
#   127.0.0.1  denied too, and reached by name ("localhost"), so only the
#              address the name resolves to can be denied;
#   127.0.0.3  allowed: the control, which must receive its request.
# A denied delivery is dead at its first attempt, with an error naming the
# setting.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = HeraldTest::new_node('main',
	"herald.deny_networks = '127.0.0.2/32, 127.0.0.1/32, ::1/128, 169.254.169.254/32'\n");

my $by_address = HeraldTest::start_receiver($node, '127.0.0.2');
my $by_name = HeraldTest::start_receiver($node, '127.0.0.1');
my $allowed = HeraldTest::start_receiver($node, '127.0.0.3');

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
SELECT herald.create_channel('by-address', 'webhook', '$by_address->{url}/hook', max_attempts => 5);
SELECT herald.create_channel('by-name', 'webhook', 'http://localhost:$by_name->{port}/hook', max_attempts => 5);
SELECT herald.create_channel('metadata', 'webhook', 'http://169.254.169.254/latest/meta-data/', max_attempts => 5);
SELECT herald.create_channel('allowed', 'webhook', '$allowed->{url}/hook', max_attempts => 5);
SELECT herald.test_channel(name) FROM herald.channels ORDER BY id;
));
is($node->safe_psql('postgres', "SELECT herald.flush('30 seconds')"), 't',
	'every delivery is finished');

my %outcome = map { my @f = split /\|/; ($f[0] => { status => $f[1], attempts => $f[2], error => $f[3] }) }
  split /\n/, $node->safe_psql('postgres',
	'SELECT channel, status, attempts, last_error FROM herald.deliveries ORDER BY id');

foreach my $channel ('by-address', 'by-name', 'metadata')
{
	is($outcome{$channel}{status}, 'dead', "$channel: the delivery is dead");
	is($outcome{$channel}{attempts}, 1, "$channel: at its first attempt, not retried");
	like($outcome{$channel}{error}, qr/refused by herald\.deny_networks \(/,
		"$channel: the error names the policy");
}
like($outcome{'by-name'}{error}, qr/connection to (127\.0\.0\.1|::1) refused/,
	'by-name: the address the name resolved to is the one refused');
like($outcome{'metadata'}{error}, qr/169\.254\.169\.254\/32/,
	'metadata: the cloud metadata address is denied');
is($outcome{allowed}{status}, 'delivered', 'allowed: the control is delivered');

my $connections = sub {
	my ($receiver) = @_;
	return -e $receiver->{connections} ? scalar(split /\n/, slurp_file($receiver->{connections})) : 0;
};
is($connections->($by_address), 0, '127.0.0.2 never received a connection');
is($connections->($by_name), 0, 'localhost (127.0.0.1) never received a connection');
cmp_ok($connections->($allowed), '>=', 1, '127.0.0.3 received the allowed connection');

HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
