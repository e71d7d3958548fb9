# notify channels carry the actions of an event that awaits a decision.
#
# With herald.public_url set, a rule with choices sends its events to a
# notify channel that one session listens on.  The payload has "actions",
# [{"id", "label", "url"}], one signed link per choice; a message too long
# for PostgreSQL's 8,000-byte limit is cut ("truncated": true) while every
# action stays whole.

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
my $node = HeraldTest::new_node('main', "herald.public_url = 'https://decide.example/herald'\n");

$node->safe_psql('postgres', q(
CREATE EXTENSION pg_herald;
CREATE TABLE notes(id int PRIMARY KEY, body text);
SELECT herald.create_channel(name => 'bus', kind => 'notify', target => 'herald_events');
SELECT herald.on_change(name => 'note', on_table => 'notes', channels => ARRAY['bus'],
                        operations => ARRAY['INSERT'], message => 'Note {{new.id}}: {{new.body}}',
                        choices => ARRAY['Roll back', 'Keep "watching"', repeat('é', 75)]);
));

my $listener = $node->background_psql('postgres', on_error_stop => 1);
$listener->query_safe('LISTEN herald_events');

$node->safe_psql('postgres', q(
INSERT INTO notes VALUES (1, 'short');
INSERT INTO notes VALUES (2, repeat('x', 20000));
));
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the notify deliveries complete');

# psql prints notifications after the next command it runs
my @payloads;
my $output = '';
my $deadline = time() + $timeout;
while (@payloads < 2 && time() < $deadline)
{
	$output .= $listener->query_safe('SELECT 1') . "\n";
	@payloads = ($output =~ /Asynchronous notification "herald_events" with payload "(.*)" received/g);
	sleep(0.1) if @payloads < 2;
}
is(scalar(@payloads), 2, 'the listener received two notifications');

my $longest = 0;
foreach my $p (@payloads)
{
	$longest = length($p) if length($p) > $longest;
}
cmp_ok($longest, '<', 8000, "every payload is under 8,000 bytes (longest: $longest)");

my @decoded = sort { $a->{event_id} <=> $b->{event_id} }
  grep { defined $_ } map { eval { JSON::PP->new->utf8(1)->decode($_) } } @payloads;
is(scalar(@decoded), 2, 'every payload is valid JSON');
ok(!$decoded[0]{truncated}, 'a short message is not marked truncated');
ok($decoded[1]{truncated}, 'a long message is cut');
like($decoded[1]{message}, qr/^Note 2: x{1000,}/, 'the message is what was cut');
cmp_ok(length($decoded[1]{message}), '<', 8000, 'the message was cut to fit');
foreach my $d (@decoded)
{
	my @actions = @{ $d->{actions} // [] };
	is_deeply([ map { $_->{id} } @actions ], [ 'choice-1', 'choice-2', 'choice-3' ],
		"event $d->{event_id}: one action per choice");
	is_deeply([ map { $_->{label} } @actions ],
		[ 'Roll back', 'Keep "watching"', "\x{e9}" x 75 ],
		"event $d->{event_id}: the labels arrive whole");
	is(scalar(grep { $_->{url} =~ m{^https://decide\.example/herald/d/[A-Za-z0-9_-]{40,}$} } @actions),
		3, "event $d->{event_id}: every action is a signed link under the public URL");
	ok(!exists $d->{actions_dropped}, "event $d->{event_id}: no action was dropped");
	unlike($d->{message}, qr/herald\.acknowledge/, "event $d->{event_id}: the message asks nothing in SQL");
}

# each token opens its own action of its own event
my $event2 = $decoded[1]{event_id};
my $token = ($decoded[1]{actions}[1]{url} =~ m{/d/([A-Za-z0-9_-]+)$})[0];
is($node->safe_psql('postgres',
		"SELECT status || ' ' || action || ' ' || (event_id = $event2) FROM herald._link_check('$token')"),
	'valid 2 true', 'the link of the second choice verifies for its event');

$listener->quit;
HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
