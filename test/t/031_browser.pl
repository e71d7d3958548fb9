# Deciding from an email, in a real browser.
#
# A row rule with choices sends an email to one recipient through the test
# SMTP receiver; the test takes the decision links from the email as a mail
# client would (test/browser/mail.py: MIME parts, quoted-printable, HTML
# entities) and checks that the plain part lists the same URLs.  A plain
# GET and a HEAD of a link record nothing.  Then headless Chromium
# (test/browser/decide.mjs, playwright-core) opens the link on a 390 px wide
# phone screen: the page names the rule and the recipient, the link's
# choice is preselected, nothing scrolls sideways, no asset comes from
# elsewhere, and the GET (scripts included) recorded nothing.  The person
# picks another choice, types a decision and submits: the confirmation page
# shows, and herald.decision_log holds exactly that decision, by the
# recipient, identified by the link, from the email channel.  Going back and
# submitting again, and resending the very same POST, show the decision
# already recorded, and there is still one.
#
# Screenshots: decision-page.png (the page on the phone), decision-recorded.png
# (the confirmation) and email.png (the email's HTML part at 600 px) go to
# $HERALD_SCREENSHOT_DIR when it is set (scripts/screenshots.sh copies them
# into docs/images/), else into the test's temporary directory.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $test_dir = $ENV{HERALD_TEST_DIR} // "$FindBin::RealBin/..";
my $python = $ENV{HERALD_PYTHON} // 'python3';
my $json = JSON::PP->new->utf8(1)->canonical(1);
my $recipient = 'ann.sales@example.com';
my @choices = ('Roll back the form', 'Keep watching', 'Escalate');
my $decision_text = 'Rolled back the checkout form at 14:05; Bob checks conversion tomorrow';

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $public = "http://127.0.0.1:$port";
my $node = HeraldTest::new_node('browser', "herald.http_listen = '127.0.0.1:$port'\n");
my $smtp = HeraldTest::start_smtp_receiver($node);
my $shots = $ENV{HERALD_SCREENSHOT_DIR} || $node->basedir . '/screenshots';
mkdir $shots unless -d $shots;

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL);
SELECT herald.create_channel(name => 'sales mail', kind => 'email', target => '$smtp->{url}',
                             recipients => ARRAY['$recipient'], sender => 'herald\@example.com');
SELECT herald.on_change(name => 'big_order', on_table => 'orders', channels => ARRAY['sales mail'],
                        operations => ARRAY['INSERT'], condition => 'NEW.amount > 10000',
                        message => 'Order {{new.id}} from {{new.customer}}: {{new.amount}} EUR',
                        choices => ARRAY['$choices[0]', '$choices[1]', '$choices[2]']);
INSERT INTO orders VALUES (7001, 'Globex', 18250.00);
));
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the email is delivered');
my $event_id = $node->safe_psql('postgres',
	"SELECT id FROM herald.events WHERE rule = 'big_order' AND type = 'row.inserted'");
like($event_id, qr/^\d+$/, 'the rule fired one row event');
my $channel_id = $node->safe_psql('postgres',
	"SELECT id FROM herald.channel_defs WHERE name = 'sales mail'");

sub decisions
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM herald.decision_log');
}

# ---- the email, as a mail client reads it ----
my ($mail_out, $mail_err) = ('', '');
IPC::Run::run([ $python, "$test_dir/browser/mail.py", $smtp->{log}, '--html-dir', $node->basedir ],
	'<', '/dev/null', '>', \$mail_out, '2>', \$mail_err)
  or die "test/browser/mail.py failed: $mail_err";
my @mails = map { $json->decode($_) } split /\n/, $mail_out;
is(scalar(@mails), 1, 'the SMTP receiver got one email');
my $mail = $mails[0] // {};
is_deeply($mail->{rcpt_tos}, [$recipient], 'addressed to the recipient');
ok(defined $mail->{html} && defined $mail->{text}, 'the email has a plain and an HTML part');

my @html_actions = grep { ($_->{href} // '') =~ m{^\Q$public\E/d/[A-Za-z0-9_-]+$} } @{ $mail->{html_links} // [] };
my @text_actions = grep { m{^\Q$public\E/d/} } @{ $mail->{text_urls} // [] };
is(scalar(@html_actions), scalar(@choices), 'the HTML part has one decision link per choice')
  or diag(explain($mail->{html_links}));
is_deeply([ map { $_->{text} } @html_actions ], \@choices,
	'each link is labelled with its choice, in order');
is_deeply(\@text_actions, [ map { $_->{href} } @html_actions ],
	'the plain part lists the same URLs in the same order')
  or diag(explain(\@text_actions));
my %distinct = map { ($_->{href} => 1) } @html_actions;
is(scalar(keys %distinct), scalar(@choices), 'every choice has its own URL');

my $link = $html_actions[0]{href} // "$public/d/none";
my $preselected = $choices[0];

# ---- GET and HEAD record nothing ----
my $http = HTTP::Tiny->new(timeout => 15, max_redirect => 0);
my $get = $http->get($link);
is($get->{status}, 200, 'a plain GET of the link shows the page')
  or diag("$get->{status} $get->{reason}: " . substr($get->{content} // '', 0, 500));
like($get->{headers}{'content-type'} // '', qr{^text/html}i, 'as HTML');
like($get->{headers}{'content-security-policy'} // '', qr/default-src/i,
	'with a Content-Security-Policy');
is(uc($get->{headers}{'x-frame-options'} // ''), 'DENY', 'with X-Frame-Options: DENY');
like($get->{headers}{'cache-control'} // '', qr/no-store/i, 'with Cache-Control: no-store');
my $head = $http->request('HEAD', $link);
is($head->{status}, 200, 'a HEAD of the link answers like the GET');
is($head->{content} // '', '', 'with no body');
is(decisions(), '0', 'the GET and the HEAD recorded nothing');

# ---- the browser ----
my ($in, $out, $err) = ('', '', '');
my $timer = IPC::Run::timeout(120);
# Chromium's socket paths must stay under 108 bytes: a short directory
my $browser_home = PostgreSQL::Test::Utils::tempdir_short();
my $browser;
{
	# Chromium's profile and temporary files stay in the test's directory
	local $ENV{HOME} = $browser_home;
	local $ENV{TMPDIR} = $browser_home;
	local $ENV{XDG_CONFIG_HOME} = "$browser_home/.config";
	local $ENV{XDG_CACHE_HOME} = "$browser_home/.cache";
	$browser = IPC::Run::start([ 'node', "$test_dir/browser/decide.mjs" ],
		'<', \$in, '>', \$out, '2>', \$err, $timer);
}

END
{
	eval { $browser->kill_kill } if $browser;
}

# One command to decide.mjs, its JSON answer (bounded: 120 s a step).
sub browse
{
	my ($command) = @_;
	$in .= $json->encode($command) . "\n";
	$timer->start(120);
	my $answer = eval {
		$browser->pump until $out =~ /\n/;
		1;
	};
	if (!$answer || $out !~ /\n/)
	{
		diag("decide.mjs did not answer $command->{cmd}: " . ($@ || 'timeout') . "\nstderr: $err");
		return { ok => 0, error => 'no answer' };
	}
	$out =~ s/^([^\n]*)\n//;
	my $reply = eval { $json->decode($1) } // { ok => 0, error => "not JSON: $1" };
	diag("decide.mjs $command->{cmd}: $reply->{error}") unless $reply->{ok};
	return $reply;
}

# The choice controls of a page's form: [label, checked] of each radio
# button, or of each option of a select.
sub choice_controls
{
	my ($form) = @_;
	my @got;
	foreach my $c (@{ $form->{controls} // [] })
	{
		if (($c->{type} // '') eq 'radio')
		{
			push @got, [ $c->{label}, $c->{checked} ? 1 : 0 ];
		}
		elsif (($c->{tag} // '') eq 'select' && !@got)
		{
			push @got, [ $_->{label}, $_->{selected} ? 1 : 0 ] foreach @{ $c->{options} };
		}
	}
	return \@got;
}

my $page = browse({ cmd => 'open', url => $link, width => 390,
		screenshot => "$shots/decision-page.png" });
ok($page->{ok}, 'Chromium opens the link');
is($page->{status}, 200, 'the decision page answers 200');
like($page->{text} // '', qr/big_order/, 'the page names the rule');
like($page->{text} // '', qr/Globex/, 'and shows the event\'s message');
like($page->{text} // '', qr/\Q$recipient\E/, 'and whom it records as');
ok($page->{form}, 'the page has a POST form');
is_deeply(choice_controls($page->{form}), [ map { [ $_, $_ eq $preselected ? 1 : 0 ] } @choices ],
	"the form offers the rule's choices with the link's one preselected")
  or diag(explain($page->{form}));
ok(defined $page->{scroll_width} && $page->{scroll_width} <= 390,
	'the page fits a 390 px wide phone without horizontal scrolling')
  or diag("scrollWidth $page->{scroll_width}, viewport meta: " . ($page->{viewport_meta} // 'none'));
my @foreign = grep { !m{^[A-Z]+ \Q$public\E/} } @{ $page->{requests} // [] };
is_deeply(\@foreign, [], 'the page loads nothing from elsewhere');
is(decisions(), '0', 'opening the page in a browser (scripts run) recorded nothing');

my $done = browse({ cmd => 'submit', choice => $choices[2], text => $decision_text,
		screenshot => "$shots/decision-recorded.png" });
ok($done->{ok}, 'the person picks a choice, types a decision and submits');
is($done->{status}, 200, 'the confirmation page answers 200')
  or diag("the browser's POST had Origin: " . ($done->{post}{origin} // 'none') . "\n" . ($done->{text} // ''));
like($done->{text} // '', qr/recorded/i, 'the confirmation says the decision is recorded')
  or diag($done->{text});
like($done->{text} // '', qr/\Q$choices[2]\E/, 'and names the choice');
unlike($done->{text} // '', qr/already/i, 'the first submission is not "already recorded"');
ok(defined $done->{scroll_width} && $done->{scroll_width} <= 390,
	'the confirmation fits the phone too');
is($done->{post}{content_type} // '', 'application/x-www-form-urlencoded', 'the form was POSTed');

is( $node->safe_psql('postgres', qq(
SELECT concat_ws('|', event_id, kind, choice, decision, identified_by, actor_id, decided_by, channel_id)
  FROM herald.decision_log)),
	join('|', $event_id, 'decision', $choices[2], $decision_text, 'link', $recipient, $recipient, $channel_id),
	'the decision is recorded: the choice and text, by the recipient, identified by the link, from the email channel');

my $again = browse({ cmd => 'back_resubmit' });
ok($again->{ok}, 'the person goes back and submits again');
my $shown = $again->{resubmitted} ? $again->{after}{text} : $again->{back}{text};
like($shown // '', qr/already recorded/i, 'the page says the decision is already recorded')
  or diag("back: HTTP " . ($again->{back}{status} // '?') . ", hidden fields as submitted: "
	  . ($again->{back}{same_hidden_fields} ? 'yes' : 'no') . "; after: " . ($shown // ''));
my $replay = browse({ cmd => 'replay' });
ok($replay->{ok}, 'the same POST is sent again');
like($replay->{body} // '', qr/already recorded/i, 'it answers that the decision is already recorded')
  or diag("$replay->{status}: " . substr($replay->{body} // '', 0, 500));
is(decisions(), '1', 'still one decision');

# ---- the email itself, in a browser ----
my $rendered = browse({ cmd => 'email', file => $mail->{html_file} // '/nonexistent', width => 600,
		screenshot => "$shots/email.png" });
ok($rendered->{ok}, "Chromium renders the email's HTML part");
is_deeply([ map { $_->{href} } grep { $_->{href} =~ m{/d/} } @{ $rendered->{links} // [] } ],
	[ map { $_->{href} } @html_actions ], 'with its decision buttons');
is_deeply($rendered->{blocked} // ['?'], [], 'the email loads nothing from the network');
ok(defined $rendered->{scroll_width} && $rendered->{scroll_width} <= 600, 'the email fits 600 px');

# quit has no answer: the driver closes Chromium and exits
$in .= $json->encode({ cmd => 'quit' }) . "\n";
$timer->start(60);
my $finished = eval { $browser->finish; 1 };
ok($finished && !$browser->result, 'the browser driver exits cleanly') or diag("stderr: $err");
$browser->kill_kill unless $finished;
$browser = undef;

# ---- the screenshots ----
# PNG signature, then the IHDR chunk's width and height
foreach my $shot ([ 'decision-page.png', 780 ], [ 'decision-recorded.png', 780 ], [ 'email.png', 600 ])
{
	my ($file, $width) = @$shot;
	my $png = -f "$shots/$file" ? slurp_file("$shots/$file") : '';
	my ($w, $h) = length($png) > 24 ? unpack('N N', substr($png, 16, 8)) : (0, 0);
	ok(substr($png, 0, 8) eq "\x89PNG\r\n\x1a\n" && $w == $width && $h > 100,
		"screenshot $file: a PNG $width px wide") or diag("$file: ${w}x$h");
}

HeraldTest::stop_receiver($smtp);
HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
