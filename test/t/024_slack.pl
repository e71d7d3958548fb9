# Slack interactivity end to end: POST /slack/actions, signed here as Slack
# signs (HMAC-SHA256 of "v0:{timestamp}:{body}" with the app's signing
# secret, computed by Digest::SHA, not by pg_herald).
#
# A Slack channel with a signing secret and a webhook channel get a row
# rule's event with three choices.  A click on the second choice, signed
# with the channel's secret, records the decision as the Slack user
# (decided_by @ann, identified_by slack, the user id, the channel, the
# choice) and its decision.recorded goes to the click's response_url.
# Refused with nothing recorded: a bad signature, a timestamp more than 300
# s away, missing headers, the same signed request again, a token of a
# webhook channel or of a Slack channel with another secret, a malformed
# form or payload, another content type.  Without choices, Acknowledge
# records an acknowledgement and "Record a decision" records nothing and
# points to the decision page.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $base = "http://127.0.0.1:$port";
my $node = HeraldTest::new_node('slack',
	"herald.http_listen = '127.0.0.1:$port'\n"
	  . "herald.public_url = '$base'\n"
	  . "herald.http_rate_limit = 0\n");
my $receiver = HeraldTest::start_receiver($node);
my $secret = 'ops8f2b0c3d4e5f60718293a4b5c6d7e8';
my $other_secret = 'sales0123456789abcdef0123456789ab';

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
-- (above Slack's own rate: the test sends many announcements at once)
SELECT herald.create_channel('ops', 'slack', '$receiver->{url}/slack-ops',
                             slack_signing_secret => '$secret', rate_limit => 1000);
SELECT herald.create_channel('sales', 'slack', '$receiver->{url}/slack-sales',
                             slack_signing_secret => '$other_secret', rate_limit => 1000);
SELECT herald.create_channel('hook', 'webhook', '$receiver->{url}/hook');
CREATE TABLE signups (id int PRIMARY KEY, plan text);
SELECT herald.on_change('big-signup', 'signups', ARRAY['ops', 'sales', 'hook'], ARRAY['INSERT'],
                        condition => \$\$NEW.plan = 'gold'\$\$,
                        choices => ARRAY['Call them', 'Send a discount', 'Ignore']);
SELECT herald.on_change('any-signup', 'signups', ARRAY['ops'], ARRAY['INSERT'],
                        followup_after => '1 day');
INSERT INTO signups VALUES (1, 'gold');
));
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the messages are delivered');

my $http = HTTP::Tiny->new(timeout => $timeout);
my $deadline = time() + $timeout;
my $health;
do
{
	$health = $http->get("$base/healthz");
	sleep 0.1 unless $health->{status} == 200;
} while ($health->{status} != 200 && time() < $deadline);
is($health->{status}, 200, 'the HTTP worker serves');

my ($event) = $node->safe_psql('postgres',
	"SELECT id FROM herald.events WHERE rule = 'big-signup' AND type = 'row.inserted'");
my ($ack_event) = $node->safe_psql('postgres',
	"SELECT id FROM herald.events WHERE rule = 'any-signup' AND type = 'row.inserted'");

# The token of an action of a message: the last segment of its link, as
# the delivery worker signs it for the channel (herald._actions()).
sub token
{
	my ($event_id, $channel, $action_id) = @_;
	my $url = $node->safe_psql('postgres', qq(
SELECT a ->> 'url'
  FROM herald.event_log e JOIN herald.rule_defs r ON r.id = e.rule_id,
       herald.channel_defs c,
       LATERAL (SELECT id, secret FROM herald.link_keys ORDER BY id DESC LIMIT 1) k,
       LATERAL jsonb_array_elements(herald._actions(e, r, c, k.id, k.secret)) a
 WHERE e.id = $event_id AND c.name = '$channel' AND a ->> 'id' = '$action_id'));
	like($url, qr{^\Q$base\E/d/[A-Za-z0-9_-]+$}, "$channel $action_id: the action has a link");
	return (split m{/}, $url)[-1];
}

my $token = token($event, 'ops', 'choice-2');

# The Slack message as delivered has interactive buttons: a button's value
# is such a token (the message of big-signup's event: any-signup's goes to
# the same channel, sent at the same time)
{
	my ($slack) = grep { $_->{path} eq '/slack-ops' && $_->{body} =~ /big-signup/ }
	  map { decode_json($_) } split /\n/, slurp_file($receiver->{log});
	# the log is UTF-8; the body in it, once decoded, is characters
	my $body = eval { JSON::PP->new->decode($slack->{body}) } // {};
	my @buttons = map { @{ $_->{elements} // [] } }
	  grep { ($_->{type} // '') eq 'actions' } @{ $body->{blocks} // [] };
	my ($button) = grep { ($_->{action_id} // '') eq 'herald-choice-2' } @buttons;
	ok($button, 'the delivered Slack message has the button herald-choice-2');
	is( $node->safe_psql('postgres',
			"SELECT status || ' ' || event_id FROM herald._link_check('"
			  . ($button->{value} // '') . "')"),
		"valid $event",
		'its value is a valid token of the event');
	# click what was delivered
	$token = $button->{value} if $button;
}

# A block_actions payload as Slack sends it
sub payload
{
	my (%a) = @_;
	return encode_json(
		{
			type => 'block_actions',
			user => { id => 'U024BE7LH', username => 'ann', name => 'ann', team_id => 'T0001' },
			api_app_id => 'A0001',
			token => 'verification-token-unused',
			container => { type => 'message', message_ts => '1700000000.000100', channel_id => 'C0001' },
			trigger_id => '123.456.abc',
			team => { id => 'T0001', domain => 'example' },
			channel => { id => 'C0001', name => 'ops' },
			message => { ts => '1700000000.000100', type => 'message', text => 'A new signup' },
			response_url => $a{response_url} // "$receiver->{url}/slack-response/T0001/1/abc",
			actions => [
				{
					type => 'button',
					action_id => $a{action_id},
					block_id => 'herald-actions',
					value => $a{token},
					text => { type => 'plain_text', text => 'a choice' },
					action_ts => '1700000001.000200'
				}
			]
		});
}


sub signature
{
	my ($key, $ts, $body) = @_;
	return 'v0=' . hmac_sha256_hex("v0:$ts:$body", $key);
}

# POST a body to /slack/actions, signed with key at ts unless told otherwise
sub post
{
	my (%a) = @_;
	my $ts = $a{ts} // int(time());
	my %headers = ('Content-Type' => $a{content_type} // 'application/x-www-form-urlencoded');
	$headers{'X-Slack-Request-Timestamp'} = $ts unless $a{no_timestamp};
	$headers{'X-Slack-Signature'} = $a{signature} // signature($a{key} // $secret, $ts, $a{body})
	  unless $a{no_signature};
	return $http->request('POST', "$base/slack/actions",
		{ headers => \%headers, content => $a{body} });
}

sub decisions
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM herald.decision_log');
}

# --- a click, recorded as the Slack user
my $body = 'payload=' . HeraldTest::form_escape(payload(token => $token, action_id => 'herald-choice-2'));
my $ts = int(time());
my $started = time();
my $click = post(body => $body, ts => $ts);
my $elapsed = time() - $started;
is($click->{status}, 200, 'a signed click is answered 200');
cmp_ok($elapsed, '<', 3, sprintf('within the 3 s Slack waits (%.3f s)', $elapsed));
is($click->{content}, '', 'with an empty body: the message is updated through response_url');
is( $node->safe_psql('postgres', qq(
SELECT concat_ws(' | ', d.kind, d.choice, d.decision, d.decided_by, d.identified_by, d.actor_id, c.name,
                 d.response_url = '$receiver->{url}/slack-response/T0001/1/abc')
  FROM herald.decision_log d JOIN herald.channel_defs c ON c.id = d.channel_id
 WHERE d.event_id = $event)),
	'decision | Send a discount | Send a discount | @ann | slack | U024BE7LH | ops | t',
	'the decision is recorded as @ann, identified by Slack, with the choice and the channel');
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the announcements are delivered');
is( $node->safe_psql('postgres', qq(
SELECT string_agg(channel || ' ' || status, ', ' ORDER BY channel)
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
 WHERE e.type = 'decision.recorded' AND (e.payload ->> 'about_event_id')::bigint = $event)),
	'hook delivered, ops delivered, sales delivered',
	'decision.recorded goes to every channel of the rule');
my $hook_announcement = (grep { $_->{event_id} && $_->{event_id} > $event }
	  @{ HeraldTest::received($receiver, '/hook') })[0];
ok($hook_announcement, 'the webhook channel heard of the decision');
{
	my @updates = grep { $_->{path} eq '/slack-response/T0001/1/abc' } map { decode_json($_) }
	  split /\n/, slurp_file($receiver->{log});
	is(scalar(@updates), 1, 'the message is updated through the response_url, once');
	like($updates[0]{body} // '', qr/\@ann/, 'the update names who decided');
	like($updates[0]{body} // '', qr/Send a discount/, 'and the choice');
}

# --- refusals, nothing recorded
my $before = decisions();
my $replay = post(body => $body, ts => $ts);
is($replay->{status}, 200, 'the same signed request again is answered 200 (Slack needs no more)');
like($replay->{content}, qr/recorded already/, 'saying it was recorded already');
is(decisions(), $before, 'a replay records nothing');

my $bad = signature($secret, $ts, $body);
substr($bad, -1, 1) = substr($bad, -1, 1) eq '0' ? '1' : '0';
my $log_offset = -s $node->logfile;
is(post(body => $body, signature => $bad)->{status}, 401, 'a bad signature is refused with 401');
is(post(body => $body, key => 'someoneElsesSecret0123456789abcd')->{status},
	401, 'a signature with an unknown secret is refused');
is(post(body => $body, signature => uc(signature($secret, $ts, $body)), ts => $ts)->{status},
	401, 'the same signature in upper case is refused (one spelling, one replay key)');
is(post(body => $body, ts => int(time()) - 310)->{status},
	401, 'a timestamp more than 300 s old is refused, though signed');
is(post(body => $body, ts => int(time()) + 310)->{status},
	401, 'a timestamp more than 300 s ahead is refused');
is(post(body => $body, ts => 'soon')->{status}, 401, 'a timestamp that is not a number is refused');
is(post(body => $body, no_signature => 1)->{status}, 401, 'no X-Slack-Signature: 401');
is(post(body => $body, no_timestamp => 1)->{status}, 401, 'no X-Slack-Request-Timestamp: 401');
is(post(body => $body, content_type => 'application/json')->{status},
	415, 'another content type is refused');
is(decisions(), $before, 'no refused request recorded anything');

my $hook_token = token($event, 'hook', 'choice-1');
is( post(body => 'payload='
		  . HeraldTest::form_escape(payload(token => $hook_token, action_id => 'herald-choice-1')))->{status},
	403,
	'a token of a webhook channel is refused with 403');
my $sales_token = token($event, 'sales', 'choice-1');
is( post(body => 'payload='
		  . HeraldTest::form_escape(payload(token => $sales_token, action_id => 'herald-choice-1')))->{status},
	403,
	'a token of a Slack channel signed with the ops secret is refused');
my $forged = $token;
substr($forged, 10, 1) = substr($forged, 10, 1) eq 'A' ? 'B' : 'A';
is( post(body => 'payload='
		  . HeraldTest::form_escape(payload(token => $forged, action_id => 'herald-choice-2')))->{status},
	403,
	'a tampered token is refused');
is( post(body => 'payload='
		  . HeraldTest::form_escape(payload(token => $token, action_id => 'herald-choice-1')))->{status},
	400,
	'a button whose action_id does not match its token is refused');
is( post(
		body => 'payload='
		  . HeraldTest::form_escape(
			payload(
				token => $token,
				action_id => 'herald-choice-2',
				response_url => 'http://203.0.113.5/not-slack'))
	)->{status},
	400,
	'a response_url that is neither https nor loopback is refused');
is(post(body => 'payload=' . HeraldTest::form_escape('{"type": "block_actions", '))->{status},
	400, 'a payload that is not JSON is refused with 400');
is(post(body => 'payload=%7B%ZZ')->{status}, 400, 'bad percent-encoding is refused');
is(post(body => 'payload=%7B%22a%22%3A%22%FF%22%7D')->{status}, 400, 'invalid UTF-8 is refused');
is(post(body => 'payload=%7B%22a%22%3A%22%00%22%7D')->{status}, 400, 'a NUL is refused');
is(post(body => 'other=1')->{status}, 400, 'a form without payload is refused');
is(post(body => "$body&$body")->{status}, 400, 'a form with two payloads is refused');
is(post(body => 'payload=' . HeraldTest::form_escape('[1, 2]'))->{status}, 400, 'a payload that is not an object is refused');
is( post(body => 'payload=' . HeraldTest::form_escape('{"type": "view_submission", "user": {"id": "U1"}}'))
	  ->{status},
	400,
	'a payload that is not block_actions is refused');
is( post(body => 'payload='
		  . HeraldTest::form_escape(payload(token => $token, action_id => 'someone-elses-button')))->{status},
	400,
	'an action that is not pg_herald\'s is refused');
is(decisions(), $before, 'still nothing recorded');

my @logged = HeraldTest::server_log($node, $log_offset, qr/pg_herald http refused a request/);
is(scalar(grep { /bad Slack signature/ } @logged), 1,
	'the bad signatures are logged once (then a minute of quiet for that reason and address)');
ok((grep { /more than 300 s away/ } @logged), 'the stale timestamps are logged');
# (the test's own statements are logged too: only the worker's lines count)
my @worker_lines = HeraldTest::server_log($node, 0, qr/pg_herald http/);
ok(@worker_lines > 0 && !(grep { /\Q$token\E/ || /\Q$secret\E/ || /v0=[0-9a-f]{64}/ } @worker_lines),
	'the HTTP worker logs no token, no signing secret and no signature');

# --- without choices: Acknowledge records, "Record a decision" opens the page
my $decide_token = token($ack_event, 'ops', 'decide');
my $decide = post(
	body => 'payload=' . HeraldTest::form_escape(payload(token => $decide_token, action_id => 'herald-decide')));
is($decide->{status}, 200, '"Record a decision" is answered 200');
like($decide->{content}, qr{"response_type": "ephemeral".*\Q$base\E/d/\Q$decide_token\E},
	'with an ephemeral message linking to the decision page');
is(decisions(), $before, 'and records nothing: a decision needs its text');
my $ack = post(
	body => 'payload='
	  . HeraldTest::form_escape(payload(token => token($ack_event, 'ops', 'acknowledge'),
			action_id => 'herald-acknowledge')));
is($ack->{status}, 200, 'Acknowledge is answered 200');
is( $node->safe_psql('postgres',
		"SELECT kind || ' ' || decided_by || ' ' || identified_by FROM herald.decision_log WHERE event_id = $ack_event"),
	'acknowledgement @ann slack',
	'an acknowledgement is recorded as @ann');

# --- a fuzzer, on requests signed with the right secret (an unsigned body
# is never read): mutated, cut, nested and escaped payloads are answered
# 200, 400, 403 or 410, never 500, and the worker stays up
srand(20261201);
my $valid = payload(token => $token, action_id => 'herald-choice-2');
my %statuses;
my @cases = (
	'payload=' . HeraldTest::form_escape('[' x 10000 . ']' x 10000),
	'payload=' . HeraldTest::form_escape('{"a":' x 3000 . '1' . '}' x 3000),
	'payload=' . HeraldTest::form_escape('{"type": "block_actions", "user": {"id": "\\u0000"}}'),
	'payload=' . HeraldTest::form_escape('{"type": "block_actions", "user": {"id": "U1\\u0000"}}'),
	'payload=' . HeraldTest::form_escape('{"type": "block_actions", "n": 1e999999}'),
	'payload=' . HeraldTest::form_escape($valid =~ s/"U024BE7LH"/{"id": "x"}/r),
	'payload=' . HeraldTest::form_escape($valid =~ s/"actions":\[/"actions":[1,/r),
	'payload=' . HeraldTest::form_escape($valid =~ s/"herald-choice-2"/"herald-" . ("x" x 300)/er),
	'payload=%',
	'payload=%4',
	'=&&&payload',
	'&payload=' . HeraldTest::form_escape($valid),
	'payload=' . HeraldTest::form_escape($valid) . '&',
	'payload' . HeraldTest::form_escape($valid));
foreach my $i (1 .. 150)
{
	my $json = $valid;
	my $kind = $i % 3;
	if ($kind == 0)
	{
		substr($json, int(rand(length $json)), 1) = chr(int(rand(256)));
	}
	elsif ($kind == 1)
	{
		$json = substr($json, 0, int(rand(length $json)));
	}
	else
	{
		my @pieces = ('"', '\\', '{', '}', '[', ']', ',', ':', 'null', '"\\ud800"', "\x{e9}", "\xff");
		substr($json, int(rand(length $json)), 0) = $pieces[ int(rand(@pieces)) ];
	}
	my $encoded = 'payload=' . HeraldTest::form_escape($json);
	substr($encoded, int(rand(length $encoded)), 0) = '%' . sprintf('%02X', int(rand(256)))
	  if $i % 5 == 0;
	push @cases, $encoded;
}
foreach my $case (@cases)
{
	my $r = post(body => $case);
	$statuses{ $r->{status} }++;
}
my @unexpected = grep { !/^(200|400|403|410)$/ } keys %statuses;
is(scalar(@unexpected), 0,
	'every fuzzed request is answered 200, 400, 403 or 410 ('
	  . join(', ', map { "$_: $statuses{$_}" } sort keys %statuses) . ')');
is($http->get("$base/healthz")->{status}, 200, 'the HTTP worker still serves');

# --- 20 clicks in a row (distinct requests: each message.ts differs): all
# recorded, each answered well within Slack's 3 s
$before = decisions();
my @latencies;
foreach my $i (1 .. 20)
{
	my $json = payload(token => $token, action_id => 'herald-choice-2');
	$json =~ s/1700000000\.000100/1700000000.$i/g;
	my $t0 = time();
	my $r = post(body => 'payload=' . HeraldTest::form_escape($json));
	push @latencies, time() - $t0;
	last unless $r->{status} == 200;
}
is(decisions() - $before, 20, '20 distinct clicks record 20 decisions');
@latencies = sort { $a <=> $b } @latencies;
cmp_ok($latencies[-1], '<', 3,
	sprintf('each is answered within 3 s (median %.1f ms, slowest %.1f ms)',
		1000 * $latencies[ $#latencies / 2 ], 1000 * $latencies[-1]));

is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'everything is delivered');
HeraldTest::no_server_errors($node);
HeraldTest::stop_receiver($receiver);
done_testing();
