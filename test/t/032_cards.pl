# Slack, Microsoft Teams and Google Chat messages, as their targets show them.
#
# A grouped threshold rule with choices fires, at critical level after some
# history (so its sparkline has values), to a Slack, a Teams and a Google
# Chat channel of the test receiver.  The bodies those channels received
# are rendered in headless Chromium by test/browser/cards.mjs: Slack's
# Block Kit and Google Chat's cardsV2 by its small renderers, the Teams
# Adaptive Card by Microsoft's own renderer (npm adaptivecards).  Each
# rendered message must show the title and the message, draw every block
# or widget it got (none unknown, no Adaptive Card parse or validation
# error), load nothing from the network, and offer one button per choice,
# in order, each opening the decision link of that choice.
#
# Screenshots: slack.png, teams.png and google-chat.png (600 px wide) go to
# $HERALD_SCREENSHOT_DIR when it is set (scripts/screenshots.sh copies them
# into docs/images/), else into the test's temporary directory.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $test_dir = $ENV{HERALD_TEST_DIR} // "$FindBin::RealBin/..";
my $json = JSON::PP->new->utf8(1)->canonical(1);
# a body in the receiver's log: a JSON string, already characters
my $json_text = JSON::PP->new->canonical(1);
my $public = 'https://herald.example.com';
my @choices = ('Call the payment provider', 'Roll back the checkout', 'Keep watching');

my $node = HeraldTest::new_node('cards', "herald.public_url = '$public'\n");
my $receiver = HeraldTest::start_receiver($node);
my $shots = $ENV{HERALD_SCREENSHOT_DIR} || $node->basedir . '/screenshots';
mkdir $shots unless -d $shots;

my %path = (slack => '/slack', teams => '/teams', google_chat => '/chat');
my %picture = (slack => 'slack.png', teams => 'teams.png', google_chat => 'google-chat.png');
my @kinds = ('slack', 'teams', 'google_chat');

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE baskets (shop text NOT NULL, abandoned int NOT NULL);
INSERT INTO baskets VALUES ('paris', 20);
SELECT herald.create_channel(name => 'growth', kind => 'slack',
                             target => '$receiver->{url}$path{slack}', rate_limit => 1000);
SELECT herald.create_channel(name => 'growth-teams', kind => 'teams',
                             target => '$receiver->{url}$path{teams}');
SELECT herald.create_channel(name => 'growth-chat', kind => 'google_chat',
                             target => '$receiver->{url}$path{google_chat}', rate_limit => 1000);
SELECT herald.on_threshold(name => 'abandoned-baskets',
                           metric => 'SELECT shop, abandoned FROM baskets',
                           op => '>', threshold => 100, warning_threshold => 80,
                           channels => ARRAY['growth', 'growth-teams', 'growth-chat'],
                           watch => ARRAY['baskets'::regclass],
                           message => '{{value}} baskets abandoned in {{key}} in the last hour {{sparkline}}',
                           choices => ARRAY['$choices[0]', '$choices[1]', '$choices[2]']);
));
# a history, then the crossing
foreach my $abandoned (20, 45, 60, 130)
{
	$node->safe_psql('postgres', "UPDATE baskets SET abandoned = $abandoned");
	is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', "evaluated at $abandoned");
}
is( $node->safe_psql('postgres',
		"SELECT string_agg(type || ':' || (payload ->> 'level'), ',') FROM herald.events"),
	'rule.fired:critical', 'the rule fired once, at critical level');
is( $node->safe_psql('postgres',
		"SELECT string_agg(channel || ':' || status, ',' ORDER BY channel COLLATE \"C\") FROM herald.deliveries"),
	'growth:delivered,growth-chat:delivered,growth-teams:delivered',
	'each channel got its message');

# The bodies the receiver got, one per channel.
my %body;
open my $log, '<', $receiver->{log} or die "could not open $receiver->{log}: $!";
while (my $line = <$log>)
{
	next unless $line =~ /\n\z/;
	my $request = $json->decode($line);
	foreach my $kind (@kinds)
	{
		push @{ $body{$kind} }, $json_text->decode($request->{body})
		  if $request->{path} eq $path{$kind};
	}
}
close $log;
is(scalar(@{ $body{$_} // [] }), 1, "$_ received one message") foreach @kinds;

# What each payload says its title is and where its buttons lead.
sub expected
{
	my ($kind, $b) = @_;
	if ($kind eq 'slack')
	{
		my ($header) = grep { $_->{type} eq 'header' } @{ $b->{blocks} };
		my @urls = map { $_->{url} } grep { $_->{type} eq 'button' }
		  map { @{ $_->{elements} } } grep { $_->{type} eq 'actions' } @{ $b->{blocks} };
		return ($header->{text}{text}, \@urls);
	}
	if ($kind eq 'teams')
	{
		my $card = $b->{attachments}[0]{content};
		my ($title) = grep { $_->{type} eq 'TextBlock' } @{ $card->{body} };
		my @sets = ((grep { $_->{type} eq 'ActionSet' } @{ $card->{body} }),
			{ actions => $card->{actions} // [] });
		my @urls = map { $_->{url} } grep { $_->{type} eq 'Action.OpenUrl' }
		  map { @{ $_->{actions} } } @sets;
		return ($title->{text}, \@urls);
	}
	# the card's header, or the text's first line in bold
	my ($header) = grep { defined } map { $_->{card}{header}{title} } @{ $b->{cardsV2} // [] };
	my ($title) = $header // (($b->{text} // '') =~ /^\*([^*\n]+)\*/);
	my @urls = map { $_->{onClick}{openLink}{url} }
	  map { @{ $_->{buttonList}{buttons} } } grep { $_->{buttonList} }
	  map { @{ $_->{widgets} } } map { @{ $_->{card}{sections} } } @{ $b->{cardsV2} };
	return ($title, \@urls);
}

my $request_file = $node->basedir . '/cards.json';
open my $fh, '>', $request_file or die "could not write $request_file: $!";
print $fh $json->encode({ cards => [
	map { { kind => $_, payload => $body{$_}[0], width => 600,
		screenshot => "$shots/$picture{$_}" } } grep { $body{$_} } @kinds ] });
close $fh;

# Chromium's socket paths must stay under 108 bytes: a short directory
my $browser_home = PostgreSQL::Test::Utils::tempdir_short();
my ($out, $err) = ('', '');
{
	local $ENV{HOME} = $browser_home;
	local $ENV{TMPDIR} = $browser_home;
	local $ENV{XDG_CONFIG_HOME} = "$browser_home/.config";
	local $ENV{XDG_CACHE_HOME} = "$browser_home/.cache";
	IPC::Run::run([ 'node', "$test_dir/browser/cards.mjs", $request_file ],
		'<', '/dev/null', '>', \$out, '2>', \$err, IPC::Run::timeout(180));
}
my $result = eval { $json->decode((split /\n/, $out)[-1] // '') } // { ok => 0, error => "no answer: $err" };
ok($result->{ok}, 'Chromium renders the three messages') or diag($result->{error});
my %rendered = map { ($_->{kind} => $_) } @{ $result->{cards} // [] };

foreach my $kind (@kinds)
{
	my $card = $rendered{$kind} // {};
	my ($title, $urls) = $body{$kind} ? expected($kind, $body{$kind}[0]) : ('', []);
	like($title // '', qr/abandoned-baskets/, "$kind: the payload has a title naming the rule");
	is($card->{title}, $title, "$kind: the rendered message has that title");
	like($card->{text} // '', qr/\Q$title\E/, "$kind: and shows it") if defined $title;
	like($card->{text} // '', qr/130 baskets abandoned in paris/, "$kind: it shows the message");
	is_deeply($card->{unknown} // ['?'], [], "$kind: every block is drawn, none invalid");
	is_deeply($card->{blocked} // ['?'], [], "$kind: nothing is loaded from the network");
	is_deeply([ map { $_->{label} } @{ $card->{buttons} // [] } ], \@choices,
		"$kind: one button per choice, in order");
	is(scalar(@$urls), scalar(@choices), "$kind: the payload has one link per choice");
	ok(!grep({ !m{^\Q$public\E/d/[A-Za-z0-9_-]+$} } @$urls), "$kind: decision links of the public URL")
	  or diag(explain($urls));
	is_deeply([ map { $_->{url} } @{ $card->{buttons} // [] } ], $urls,
		"$kind: each button opens its choice's link");
	my $png = -f "$shots/$picture{$kind}" ? slurp_file("$shots/$picture{$kind}") : '';
	my ($w, $h) = length($png) > 24 ? unpack('N N', substr($png, 16, 8)) : (0, 0);
	ok(substr($png, 0, 8) eq "\x89PNG\r\n\x1a\n" && $w == 600 && $h > 100,
		"$kind: screenshot $picture{$kind}, a PNG 600 px wide") or diag("${w}x$h");
}

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
