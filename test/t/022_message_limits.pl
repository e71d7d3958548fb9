# A rendered message is bounded, whatever the template and the row.
#
# A row rule whose message repeats a placeholder 2,000 times fires on rows
# with a 100 KB value: a full rendering would be 200 MB per row.  Every
# message must stop at its limit with the visible "… [truncated]" marker
# (herald.max_message_size for webhooks, the kind's own limit for the chat
# kinds), cut at a character boundary, and the delivery worker's peak
# memory must barely grow.  A smaller herald.max_message_size cuts shorter.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $node = HeraldTest::new_node('main', '');
my $receiver = HeraldTest::start_receiver($node);
my $url = $receiver->{url};

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
CREATE TABLE big(id int PRIMARY KEY, s text);
SELECT herald.create_channel(name => 'hook', kind => 'webhook', target => '$url/hook');
SELECT herald.create_channel(name => 'slack', kind => 'slack', target => '$url/slack',
                             rate_limit => 1000);
SELECT herald.create_channel(name => 'teams', kind => 'teams', target => '$url/teams');
SELECT herald.create_channel(name => 'chat', kind => 'google_chat', target => '$url/chat',
                             rate_limit => 1000);
SELECT herald.on_change(name => 'big', on_table => 'big',
                        channels => ARRAY['hook', 'slack', 'teams', 'chat'],
                        operations => ARRAY['INSERT'],
                        message => repeat('{{new.s}}', 2000) || ' end');
));

# The delivery worker's peak resident memory (VmHWM), in kB.
sub peak_kb
{
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_herald delivery'");
	my ($kb) = slurp_file("/proc/$pid/status") =~ /^VmHWM:\s+(\d+) kB/m;
	return $kb;
}

# What the receiver got on a path about the rows of big: one row per
# request, from its log, in event order.
sub requests
{
	my ($path, $select) = @_;
	return $node->safe_psql('postgres', qq(
SELECT $select
  FROM (SELECT l::jsonb AS r
          FROM regexp_split_to_table(pg_read_file('$receiver->{log}'), E'\\n') AS l
         WHERE l <> '') AS log,
       LATERAL (SELECT (r ->> 'body')::jsonb AS b) AS body
 WHERE r ->> 'path' = '$path' AND r ->> 'body' LIKE '%rule%big%'
 ORDER BY (r ->> 'n')::int));
}

# warm-up: the worker has its connection, plans and libcurl
$node->safe_psql('postgres', "SELECT herald.test_channel('hook')");
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the warm-up is delivered');
my $before = peak_kb();

$node->safe_psql('postgres', q(
INSERT INTO big VALUES (1, repeat('x', 100000));
INSERT INTO big VALUES (2, repeat('é', 50000));
));
is($node->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => 60 + $timeout),
	't', 'the deliveries of the huge rows complete');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM herald.deliveries WHERE status = 'delivered' AND event_id IN (2, 3)"),
	'8', 'every kind delivers them');
my $after = peak_kb();
note(sprintf('delivery worker peak RSS: %.1f MB before, %.1f MB after the two rows',
	$before / 1024, $after / 1024));
cmp_ok($after - $before, '<', 32 * 1024,
	'the worker\'s peak memory grows by less than 32 MB');

my $marker = '… [truncated]';
is( requests('/hook', qq(
octet_length(b #>> '{data,message}') <= 65536 AND (b #>> '{data,message}') LIKE '%$marker'
AND left(b #>> '{data,message}', 3) = left(b #>> '{data,new,s}', 3))),
	"t\nt",
	'webhook messages stop at herald.max_message_size (64 kB) with the marker, at a character boundary');
is( requests('/slack', qq(
length(b #>> '{blocks,1,text,text}') <= 3000 AND (b #>> '{blocks,1,text,text}') LIKE '%$marker')),
	"t\nt", 'Slack sections stay within 3,000 characters with the marker');
is(requests('/teams', 'octet_length(r ->> \'body\') < 28000'), "t\nt", 'Teams payloads stay under 28 KB');
is(requests('/chat', qq(octet_length(r ->> 'body') < 32000 AND (b ->> 'text') LIKE '%$marker%')),
	"t\nt", 'Google Chat payloads stay under 32,000 bytes with the marker');

# a smaller limit, set in the configuration
$node->append_conf('postgresql.conf', "herald.max_message_size = '4kB'\n");
$node->restart;
$node->safe_psql('postgres', q(INSERT INTO big VALUES (3, repeat('y', 100000))));
is($node->safe_psql('postgres', "SELECT herald.flush('60 seconds')", timeout => 60 + $timeout),
	't', 'the third row is delivered');
is( requests('/hook', qq(
(b #>> '{data,event_id}') = '4' AND octet_length(b #>> '{data,message}') BETWEEN 4000 AND 4096
AND (b #>> '{data,message}') LIKE 'yyy%$marker')),
	"f\nf\nt", 'herald.max_message_size = 4kB cuts webhook messages at 4 kB');

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
done_testing();
