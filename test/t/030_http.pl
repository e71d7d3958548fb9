# The HTTP worker and the decision pages behind the links of messages.
#
# A server with herald.http_listen on a free loopback port.  Links are
# signed with herald._link() (as the delivery worker signs them), and some
# by this test itself (test/http_client.py token), which checks the token
# format independently and makes an expired link with a genuine MAC.
#
#   GET and HEAD show the page and record nothing; POST records, as the
#   link's recipient, with identified_by 'link', the channel and the
#   choice; the same form twice records once; an empty decision is 422;
#   a channel-reader link asks for a name; a tampered, unknown-key or
#   expired link is refused (403, 403, 410) with nothing recorded; a
#   foreign Origin is refused; unknown routes 404, wrong methods 405; a
#   1 MB body 413 and the worker goes on; 200 concurrent POSTs of distinct
#   forms all recorded, of one form recorded once; the rate limit answers
#   429; a client trickling its headers is dropped after 30 s; kill -9
#   of the worker: the postmaster restarts everything, what was recorded
#   stays, and a POST works again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use Encode qw(encode_utf8);
use IO::Socket::INET;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $test_dir = $ENV{HERALD_TEST_DIR} // "$FindBin::RealBin/..";
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $base = "http://127.0.0.1:$port";

my $node = HeraldTest::new_node('http',
	"herald.http_listen = '127.0.0.1:$port'\n"
	  . "herald.http_rate_limit = 0\n"
	  . "restart_after_crash = on\n");
my $receiver = HeraldTest::start_receiver($node);
$node->safe_psql('postgres', 'CREATE EXTENSION pg_herald');

# Send requests all at once; their answers, in order.
sub send_all
{
	my @requests = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'python3', "$test_dir/http_client.py", 'send' ],
		'<', \(encode_json(\@requests)), '>', \$out, '2>', \$err,
		IPC::Run::timeout(3 * $timeout))
	  or die "http_client.py failed: $err";
	return @{ decode_json($out) };
}

sub get { return (send_all({ method => $_[1] // 'GET', url => $_[0] }))[0]; }

# POST a form (a hash of fields) to a URL; extra headers optional.
sub post
{
	my ($url, $fields, $headers) = @_;
	return (send_all(form_request($url, $fields, $headers)))[0];
}

sub form_request
{
	my ($url, $fields, $headers) = @_;
	my $body = join '&', map { HeraldTest::form_escape($_) . '=' . HeraldTest::form_escape($fields->{$_}) }
	  sort keys %$fields;
	return {
		method => 'POST',
		url => $url,
		body => $body,
		headers => {
			'Content-Type' => 'application/x-www-form-urlencoded',
			%{ $headers // {} }
		}
	};
}


sub form_token
{
	my ($page) = @_;
	return $page->{body} =~ /name="form" value="([^"]+)"/ ? $1 : undef;
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Run test/http_client.py with arguments; its output, chomped.
sub client
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'python3', "$test_dir/http_client.py", @_ ], '>', \$out, '2>', \$err,
		IPC::Run::timeout(3 * $timeout))
	  or die "http_client.py $_[0] failed: $err";
	chomp $out;
	return $out;
}

# POST a raw body; its status.
sub post_raw
{
	my ($url, $body, $type) = @_;
	return (send_all({ method => 'POST', url => $url, body => $body,
			headers => { 'Content-Type' => $type // 'application/x-www-form-urlencoded' } }))[0]{status};
}

# A link as the delivery worker signs it.
sub link_url
{
	my ($event, $action, $channel, $recipient) = @_;
	return sql(
		"SELECT herald._link(k.id, k.secret, $event, $action, "
		  . "(SELECT id FROM herald.channel_defs WHERE name = '$channel'), '$recipient')"
		  . " FROM herald.link_keys k WHERE k.retired_at IS NULL ORDER BY k.id DESC LIMIT 1");
}

sub decisions { return sql('SELECT count(*) FROM herald.decision_log'); }

# Wait (bounded) until /healthz answers 200.
sub wait_healthy
{
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $r = get("$base/healthz");
		return 1 if $r->{status} == 200;
		sleep 0.1;
	}
	return 0;
}

ok(wait_healthy(), 'the HTTP worker serves /healthz');
my $health = get("$base/healthz");
is($health->{body}, "ok\n", '/healthz says ok');

sql(<<"SQL");
CREATE TABLE orders (id int PRIMARY KEY, amount numeric, note text);
SELECT herald.create_channel('ops', 'webhook', '$receiver->{url}/hook');
SELECT herald.on_change('big_order', 'orders', ARRAY['ops'], operations => ARRAY['INSERT'],
                        message => 'Order {{new.id}}: {{new.amount}} EUR <script>alert(1)</script>');
SELECT herald.on_change('refund', 'orders', ARRAY['ops'], operations => ARRAY['UPDATE'],
                        choices => ARRAY['Roll back the form', 'Keep watching', 'Escalate']);
INSERT INTO orders VALUES (1, 12000, 'first');
UPDATE orders SET note = 'changed' WHERE id = 1;
SQL
my $event = sql("SELECT id FROM herald.event_log WHERE rule = 'big_order'");
my $choice_event = sql("SELECT id FROM herald.event_log WHERE rule = 'refund'");

# ---- GET shows, records nothing ----
my $url = link_url($event, 2, 'ops', 'ann@example.com');
like($url, qr{^\Q$base\E/d/[A-Za-z0-9_-]+$}, 'links are {public_url}/d/{token}');
my $page = get($url);
is($page->{status}, 200, 'GET of a link shows its page');
like($page->{body}, qr/big_order: new row in public\.orders/, 'the page shows the title');
like($page->{body}, qr/Order 1: 12000 EUR &lt;script&gt;alert\(1\)&lt;\/script&gt;/,
	'the page shows the message, escaped');
unlike($page->{body}, qr/<script>/, 'no markup from the message reaches the page');
like($page->{body}, qr/<input type="radio" name="action" value="2" checked> Record a decision/,
	"the link's action is preselected");
like($page->{body}, qr/value="1"> Acknowledge/, 'the other action is offered');
like($page->{body}, qr/Recording as <strong>ann\@example\.com<\/strong>/, 'the page names the recipient');
like($page->{body}, qr/<meta name="viewport" content="width=device-width/, 'the page has a viewport');
like($page->{headers}{'content-security-policy'}, qr/default-src 'none'.*frame-ancestors 'none'/,
	'Content-Security-Policy');
is($page->{headers}{'x-frame-options'}, 'DENY', 'X-Frame-Options: DENY');
is($page->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');
is($page->{headers}{'x-content-type-options'}, 'nosniff', 'X-Content-Type-Options');
my $head = get($url, 'HEAD');
is($head->{status}, 200, 'HEAD of a link answers 200');
is(decisions(), 0, 'GET and HEAD recorded nothing');

# ---- POST records, once per form ----
my $form = form_token($page);
ok(defined $form, 'the page carries a form token');
my $answer = post($url,
	{ form => $form, action => 2, said => "Call the customer \x{2713}", next_step => 'check the fraud score',
	  owner => 'Bob', due => '2026-12-24' });
is($answer->{status}, 200, 'POST of the form answers 200');
like($answer->{body}, qr/Recorded/, 'and confirms');
is( sql("SELECT kind, decision, decided_by, recorded_by, identified_by, actor_id, channel_id = "
		  . "(SELECT id FROM herald.channel_defs WHERE name = 'ops'), action, action_owner, action_due, event_id"
		  . " FROM herald.decision_log"),
	encode_utf8("decision|Call the customer \x{2713}|ann\@example.com|herald_http|link|ann\@example.com|t|check the fraud score|Bob|2026-12-24|$event"),
	'the decision is recorded as the recipient, identified by the link, with its channel');
is(sql("SELECT count(*) FROM herald.event_log WHERE type = 'decision.recorded' AND about_event_id = $event"),
	1, 'the decision is announced (decision.recorded)');
my $again = post($url, { form => $form, action => 1 });
is($again->{status}, 200, 'the same form again answers 200');
like($again->{body}, qr/already recorded.*Call the customer/s, 'and shows the decision already recorded');
is(decisions(), 1, 'the same form twice records once');
my $reopened = get($url);
like($reopened->{body}, qr/<li>[^<]*Call the customer/, 'the page lists the decisions so far');
like($reopened->{body}, qr/already recorded: [^<]*Call the customer/,
	'opened again, the link shows its recipient\'s answer');
unlike($reopened->{body}, qr/name="form"/, 'and no form: going back records nothing more');
like($reopened->{body}, qr{<a href="[A-Za-z0-9_-]+/change">Change my answer</a>}, 'changing it is a link away');
like(get("$url/change")->{body}, qr/name="form"/, '/change shows the form');
is(get("$url/other")->{status}, 404, 'another path below a link is 404');

# an empty decision is sent back; an acknowledgement needs no text
my $form2 = form_token(get("$url/change"));
my $empty = post($url, { form => $form2, action => 2, said => '  ' });
is($empty->{status}, 422, 'a decision without text is answered 422');
like($empty->{body}, qr/Say what was decided/, 'with the reason');
is(decisions(), 1, 'and nothing is recorded');
my $ack = post($url, { form => form_token($empty), action => 1, said => 'seen' });
is($ack->{status}, 200, 'an acknowledgement records');
is(sql("SELECT kind || '|' || coalesce(note, '') FROM herald.decision_log ORDER BY id DESC LIMIT 1"),
	'acknowledgement|seen', 'as an acknowledgement with its note');

# an action the page never offered is a bad form, not a changed rule
my $bad_action = post($url, { form => form_token(get("$url/change")), action => 7, said => 'x' });
is($bad_action->{status}, 400, 'an action the rule does not offer: 400');
is(decisions(), 2, 'and nothing is recorded');

# a rule's choices; a reader of the channel gives a name
my $curl = link_url($choice_event, 3, 'ops', '');
my $cpage = get($curl);
like($cpage->{body}, qr/value="3" checked> Escalate/, "a rule's choices are offered, the link's preselected");
like($cpage->{body}, qr/Recording as a reader of channel <strong>ops<\/strong>/, 'a channel link says so');
like($cpage->{body}, qr/name="name" required/, 'and asks for a name');
my $noname = post($curl, { form => form_token($cpage), action => 3 });
is($noname->{status}, 422, 'without a name: 422');
my $named = post($curl, { form => form_token($cpage), action => 1, name => 'Carla' });
is($named->{status}, 200, 'with a name: recorded');
is( sql("SELECT kind, choice, decision, decided_by, coalesce(actor_id, 'none') FROM herald.decision_log"
		  . " WHERE event_id = $choice_event"),
	'decision|Roll back the form|Roll back the form|Carla|none',
	'the choice is recorded, the label as the decision, under the typed name');

# an action the rule does not offer
is(get(link_url($event, 3, 'ops', ''))->{status}, 410, 'a choice the rule does not offer: 410');

# ---- forged, unknown key, expired, foreign origin ----
my $before = decisions();
my $token = ($url =~ m{/d/(.+)$})[0];
my $mid = int(length($token) / 2);
my $flipped = $token;
substr($flipped, $mid, 1) = substr($token, $mid, 1) eq 'A' ? 'B' : 'A';
my $forged = get("$base/d/$flipped");
is($forged->{status}, 403, 'a tampered link: 403');
like($forged->{body}, qr/This link is not valid/, 'the page says it is not valid');
is(post("$base/d/$flipped", { form => $form2, action => 1 })->{status}, 403, 'POST to it: 403');
is(get("$base/d/not-a-token")->{status}, 403, 'a malformed link: 403');

my ($key_id, $key_hex) = split /\|/,
  sql("SELECT id, encode(secret, 'hex') FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1");
my $channel_id = sql("SELECT id FROM herald.channel_defs WHERE name = 'ops'");
sub python_token
{
	my ($expires, $recipient) = @_;
	return client('token', $key_hex, $key_id, $event, 1, $channel_id, $expires, $recipient);
}
my $own = get("$base/d/" . python_token(int(time()) + 3600, 'dora@example.com'));
is($own->{status}, 200, 'a token computed independently of links.c opens');
like($own->{body}, qr/Recording as <strong>dora\@example\.com/, 'with the recipient it binds');
my $expired_url = "$base/d/" . python_token(int(time()) - 60, 'dora@example.com');
my $expired = get($expired_url);
is($expired->{status}, 410, 'an expired link: 410');
like($expired->{body}, qr/This link has expired/, 'the page says it expired');
is(post($expired_url, { form => form_token($own), action => 1 })->{status}, 410, 'POST to it: 410');

my $foreign = post($url, { form => form_token(get("$url/change")), action => 1 }, { Origin => 'https://evil.example' });
is($foreign->{status}, 403, 'a POST from another origin: 403');
my $same_origin = post($url, { form => form_token(get("$url/change")), action => 1, said => 'same origin' },
	{ Origin => $base });
is($same_origin->{status}, 200, "a POST from herald.public_url's origin records");
$before++;
my $bad_form = post($url, { form => '1.AAAA.AAAA', action => 1 });
is($bad_form->{status}, 403, 'a forged form token: 403');
is(decisions(), $before, 'none of these recorded anything');

sql('SELECT herald.rotate_link_key(revoke => true)');
is(get($url)->{status}, 403, 'after herald.rotate_link_key(revoke => true), an old link: 403');
like(link_url($event, 1, 'ops', 'ann@example.com'), qr{/d/}, 'the new key signs');
is(get(link_url($event, 1, 'ops', 'ann@example.com'))->{status}, 200, 'and its links open');

# ---- hostile forms ----
($key_id, $key_hex) = split /\|/,
  sql("SELECT id, encode(secret, 'hex') FROM herald.link_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1");
$url = link_url($event, 1, 'ops', 'ann@example.com');
my $link_token = ($url =~ m{/d/(.+)$})[0];
$before = decisions();
is(post($url, { form => client('form', $key_hex, $link_token, int(time())), action => 1,
			said => 'independent form' })->{status}, 200,
	'a form token computed independently of decision_page.c is accepted');
$before++;
is(post($url, { form => client('form', $key_hex, $link_token, int(time()) - 90000), action => 1 })->{status},
	403, 'a genuine form token older than a day: 403');
is(post($url, { form => client('form', $key_hex, $link_token, int(time()) + 3600), action => 1 })->{status},
	403, 'a form token from the future: 403');
my $ftok = form_token(get("$url/change"));
is(post(link_url($event, 1, 'ops', 'eve@example.com'), { form => $ftok, action => 1 })->{status}, 403,
	"another link's form token: 403");
(my $noncanonical = $ftok) =~ s/^/0/;
is(post($url, { form => $noncanonical, action => 1 })->{status}, 403, 'a form token spelled another way: 403');
my $fenc = HeraldTest::form_escape($ftok);
is(post_raw($url, "form=$fenc&action=1&said=a%00b"), 400, 'a NUL in a field: 400');
is(post_raw($url, "form=$fenc&action=1&said=%C3%28"), 400, 'invalid UTF-8: 400');
is(post_raw($url, "form=$fenc&action=1&said=%G1"), 400, 'bad percent-encoding: 400');
is(post_raw($url, "form=$fenc&action=1&said"), 400, 'a field without "=": 400');
is(post_raw($url, "form=$fenc&action=1", 'text/plain'), 415, 'a body that is not a form: 415');
is(post($url, { form => $ftok, action => '1e3' })->{status}, 400, 'an action that is not a number: 400');
is(post($url, { form => $ftok, action => 1, said => 'x' x 4001 })->{status}, 422, 'a decision over 4,000 characters: 422');
is(post($url, { form => $ftok, action => 2, said => 'x', due => '2026-02-31' })->{status}, 422,
	'an impossible due date: 422');
is(post($url, { action => 1 })->{status}, 400, 'no form token: 400');
is(decisions(), $before, 'none of these recorded anything');
is(post($url, { form => $ftok, action => 1, said => 'after all that' })->{status}, 200,
	'and the form still records');

# ---- routes and bodies ----
{
	# a proxy that keeps herald.public_url's path: the token stays out of the log
	my $offset = -s $node->logfile;
	my $prefixed_token = ($url =~ m{/d/(.+)$})[0];
	is(get("$base/herald/d/$prefixed_token")->{status}, 404, 'a link below another path: 404');
	is(get("$base/healthz")->{status}, 200, 'the worker goes on');
	my @logged = HeraldTest::server_log($node, $offset, qr/no route GET \/herald\/d\/\.\.\./);
	is(scalar(@logged), 1, 'the refusal is logged');
	is(scalar(HeraldTest::server_log($node, $offset, qr/\Q$prefixed_token\E/)), 0, 'the token is not logged');
}
is(get("$base/nowhere")->{status}, 404, 'an unknown route: 404');
{
	# a request line with bytes that are not ASCII: the log gets "?" for them
	# (from an address of its own: refusals are logged once a minute per
	# kind and address)
	my $offset = -s $node->logfile;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		LocalAddr => '127.0.0.3', Timeout => 10);
	ok($sock, 'a raw connection');
	print $sock "GET /raw\xff\xfe\x01path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	my $line = <$sock> // '';
	close $sock;
	like($line, qr{^HTTP/1\.1 404}, 'a path with raw bytes: 404');
	ok(wait_healthy(), 'the worker goes on');
	is(scalar(HeraldTest::server_log($node, $offset, qr{no route GET /raw\?\?\?path})), 1,
		'the refusal is logged with "?" for each byte that is not printable ASCII');
	is(scalar(HeraldTest::server_log($node, $offset, qr/[\x80-\xff]/)), 0,
		'no byte outside ASCII reaches the log');
}
is(get("$base/d/x/y")->{status}, 404, 'a path below a link: 404');
is(get("$base/slack/actions")->{status}, 405, 'GET /slack/actions: 405');
is((send_all({ method => 'PUT', url => $url }))[0]{status}, 405, 'PUT of a link: 405');
my ($big) = send_all({ method => 'POST', url => $url, declared_length => 1 << 20,
		headers => { 'Content-Type' => 'application/x-www-form-urlencoded' } });
is($big->{status}, 413, 'a 1 MB body: 413, before it is sent');
# a body without a declared length (chunked) over 64 kB: the connection is
# closed, whatever the client manages to read of it
my ($chunked) = send_all({ method => 'POST', url => $url, body_bytes => 1 << 20,
		chunked => JSON::PP::true, headers => { 'Content-Type' => 'application/x-www-form-urlencoded' } });
isnt($chunked->{status}, 200, 'a chunked 1 MB body is not served');
is(get("$base/healthz")->{status}, 200, 'and the worker goes on');

# ---- 200 concurrent POSTs ----
$url = link_url($event, 1, 'ops', 'ann@example.com');
my @links = split /\n/, sql(
	"SELECT herald._link(k.id, k.secret, $event, 1, $channel_id, 'user' || i || '\@example.com')"
	  . " FROM herald.link_keys k, generate_series(1, 200) i WHERE k.retired_at IS NULL ORDER BY i");
my @pages = send_all(map { { method => 'GET', url => $_ } } @links);
is(scalar(grep { $_->{status} == 200 } @pages), 200, '200 concurrent GETs answered');
$before = decisions();
my @answers = send_all(map { form_request($links[$_], { form => form_token($pages[$_]), action => 1 }) } 0 .. 199);
is(scalar(grep { $_->{status} == 200 && $_->{body} =~ /Recorded/ } @answers), 200,
	'200 concurrent POSTs of distinct forms all answered "recorded"');
is(decisions() - $before, 200, 'and all 200 recorded');
is(sql("SELECT count(DISTINCT actor_id) FROM herald.decision_log WHERE actor_id LIKE 'user%'"), 200,
	'each as its own recipient');
my $one = get("$url/change");
$before = decisions();
@answers = send_all(map { form_request($url, { form => form_token($one), action => 1 }) } 1 .. 200);
is(scalar(grep { $_->{status} == 200 } @answers), 200, '200 concurrent POSTs of one form all answered');
is(scalar(grep { $_->{body} =~ /Recorded, thank you/ } @answers), 1, 'one says recorded');
is(decisions() - $before, 1, 'and it is recorded once');

# ---- rate limit ----
my $log_offset = -s $node->logfile;
sql("ALTER SYSTEM SET herald.http_rate_limit = 2");
sql("SELECT pg_reload_conf()");
my $limited;
my $deadline = time() + $timeout;
while (!$limited && time() < $deadline)
{
	my @burst = send_all(map { { method => 'GET', url => "$base/healthz" } } 1 .. 20);
	($limited) = grep { $_->{status} == 429 } @burst;
	sleep 0.1 unless $limited;
}
ok($limited, 'over herald.http_rate_limit: 429');
is($limited->{headers}{'retry-after'}, '1', 'with Retry-After');
$deadline = time() + $timeout;
my @refusals;
while (!@refusals && time() < $deadline)
{
	@refusals = HeraldTest::server_log($node, $log_offset, qr/refused a request from 127\.0\.0\.1: over herald\.http_rate_limit/);
	sleep 0.1 unless @refusals;
}
is(scalar(@refusals), 1, 'the refusals are logged once');
# a limit high enough that nothing is refused for its rate (a 429 closes
# its connection, which would make room for another)
sql("ALTER SYSTEM SET herald.http_rate_limit = 1000");
sql("SELECT pg_reload_conf()");
$deadline = time() + $timeout;
my $all_served;
while (!$all_served && time() < $deadline)
{
	$all_served = !grep { $_->{status} != 200 } send_all(map { { method => 'GET', url => "$base/healthz" } } 1 .. 10);
	sleep 0.1 unless $all_served;
}
ok($all_served, 'herald.http_rate_limit = 1000 is in effect');
is(client('hold', 40, "$base/healthz"), 32, 'one address holds at most 32 connections');
my $slow = client('slow', "$base/healthz");
ok($slow >= 5 && $slow <= 30, "a client that stops mid-request is dropped ($slow s)");
my $trickle = client('trickle', "$base/healthz");
ok($trickle >= 25 && $trickle <= 45,
	"a client that trickles its headers, a byte every 2 s, is dropped after 30 s ($trickle s)");
sql("ALTER SYSTEM SET herald.http_rate_limit = 0");
sql("SELECT pg_reload_conf()");
ok(wait_healthy(), 'no limit again');

# ---- an error while serving: 500, logged, nothing recorded ----
$before = decisions();
my $pending_form = form_token(get("$url/change"));
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK herald.decision_log IN ACCESS EXCLUSIVE MODE;');
$log_offset = -s $node->logfile;
my $failed = post($url, { form => $pending_form, action => 1, said => 'while locked' });
is($failed->{status}, 500, 'a request whose SQL fails (here: a lock it waits for too long) gets 500');
like($failed->{body}, qr/nothing was recorded/, 'and a page that says nothing was recorded');
$locker->query_safe('ROLLBACK;');
$locker->quit;
like(join("\n", HeraldTest::server_log($node, $log_offset, qr/pg_herald http could not serve/)),
	qr{could not serve POST /d/\{token\} from 127\.0\.0\.1: canceling statement due to lock timeout},
	'the error is logged, without the token');
is(decisions(), $before, 'nothing was recorded');
is(post($url, { form => $pending_form, action => 1, said => 'after the lock' })->{status}, 200,
	'the same form then records');
is(decisions(), $before + 1, 'once');

# ---- kill -9 of the HTTP worker ----
$before = decisions();
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_herald http'");
like($pid, qr/^\d+$/, 'the HTTP worker shows in pg_stat_activity');
kill 'KILL', $pid;
$deadline = time() + $timeout;
my $back;
while (!$back && time() < $deadline)
{
	$back = eval { $node->safe_psql('postgres', 'SELECT 1', timeout => 5) };
	sleep 0.2 unless $back;
}
ok(wait_healthy(), 'after kill -9 the HTTP worker serves again');
is(decisions(), $before, 'nothing recorded was lost');
my $after = get("$url/change");
is(post($url, { form => form_token($after), action => 1 })->{status}, 200, 'and a POST records again');
is(decisions(), $before + 1, 'it is recorded');

# ---- the extension dropped and created again ----
sql('DROP EXTENSION pg_herald CASCADE');
is(get($url)->{status}, 503, 'with pg_herald dropped: 503');
sql(<<"SQL");
CREATE EXTENSION pg_herald;
SELECT herald.create_channel('ops', 'webhook', '$receiver->{url}/hook');
SELECT herald.on_change('big_order', 'orders', ARRAY['ops'], operations => ARRAY['INSERT']);
INSERT INTO orders VALUES (2, 20000, 'second');
SQL
is(get($url)->{status}, 403, 'created again: links of the old installation do not open');
$event = sql("SELECT id FROM herald.event_log WHERE rule = 'big_order'");
$url = link_url($event, 1, 'ops', 'ann@example.com');
is(post($url, { form => form_token(get("$url/change")), action => 1 })->{status}, 200,
	'links of the new one do, and record');
is(decisions(), 1, 'in the new installation');

HeraldTest::no_server_errors($node);
$node->stop;
done_testing();
