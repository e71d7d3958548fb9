# notify channels: a LISTEN session receives the JSON payload.
#
# One session listens on the channel's notification name while
# herald.test_channel() and a row rule produce events, one of them with a
# 20,000-character message: every payload must arrive, be valid JSON with
# the event id, and stay under PostgreSQL's 8,000-byte limit, cut with
# "truncated": true.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $node = HeraldTest::new_node('main', '');

$node->safe_psql('postgres', q(
CREATE EXTENSION pg_herald;
CREATE TABLE notes(id int PRIMARY KEY, body text);
SELECT herald.create_channel(name => 'bus', kind => 'notify', target => 'herald_events');
SELECT herald.on_change(name => 'note', on_table => 'notes', channels => ARRAY['bus'],
                        operations => ARRAY['INSERT'], message => 'Note {{new.id}}: {{new.body}}');
));

my $listener = $node->background_psql('postgres', on_error_stop => 1);
$listener->query_safe('LISTEN herald_events');

my $test_delivery = $node->safe_psql('postgres', 'SELECT herald.test_channel(\'bus\')');
$node->safe_psql('postgres', q(
INSERT INTO notes VALUES (1, 'short "quoted" <b>note</b>');
INSERT INTO notes VALUES (2, repeat(chr(233), 20000));
));
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the notify deliveries complete');
is( $node->safe_psql('postgres',
		"SELECT string_agg(status, ',' ORDER BY id) FROM herald.deliveries"),
	'delivered,delivered,delivered',
	'the three deliveries are delivered');

# psql prints notifications after the next command it runs
my @payloads;
my $output = '';
my $deadline = time() + $timeout;
while (@payloads < 3 && time() < $deadline)
{
	$output .= $listener->query_safe('SELECT 1') . "\n";
	@payloads = ($output =~ /Asynchronous notification "herald_events" with payload "(.*)" received/g);
	sleep(0.1) if @payloads < 3;
}
is(scalar(@payloads), 3, 'the listener received three notifications');

my @decoded = map { eval { JSON::PP->new->utf8(1)->decode($_) } } @payloads;
is(scalar(grep { defined $_ } @decoded), 3, 'every payload is valid JSON');
my %by_type = map { ($_->{type} => $_) } grep { defined $_ } @decoded;
ok($by_type{'channel.test'}, 'channel.test event received');
like($by_type{'channel.test'}{message} // '', qr/channel bus works/, 'the test message names the channel');

my @rows = sort { $a->{event_id} <=> $b->{event_id} } grep { $_->{type} eq 'row.inserted' } @decoded;
is(scalar(@rows), 2, 'both row events received');
is($rows[0]{message}, 'Note 1: short "quoted" <b>note</b>', 'a short message arrives whole');
ok(!$rows[0]{truncated}, 'a short message is not marked truncated');
ok($rows[1]{truncated}, 'a long message is marked truncated');
ok($rows[1]{event_id} > 0, 'a truncated payload keeps its event id');
my $longest = 0;
foreach my $p (@payloads)
{
	# the payloads are still bytes here: their length is in bytes
	$longest = length($p) if length($p) > $longest;
}
cmp_ok($longest, '<', 8000, "every payload is under 8,000 bytes (longest: $longest)");
like($rows[1]{message}, qr/^Note 2: \x{e9}+$/, 'the cut falls on a character boundary');

$listener->quit;
HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
