# Upgrades: an installation of the oldest release, updated with ALTER
# EXTENSION pg_herald UPDATE, has the same catalog as a fresh install of this
# version (test/catalog.sql lists every object, column, index, trigger,
# privilege and comment), keeps its channels, rules and history, and works.
# While it still runs the old version, the workers leave it alone and say
# why in the log.  Its backlog (pending deliveries, one tried once, one
# leased by a worker of the old version, besides delivered and dead ones)
# is delivered after the update, once each, the others are not sent again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $catalog = slurp_file("$FindBin::RealBin/../catalog.sql");
my $node = HeraldTest::new_node('main', '');
my $version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pg_herald'");
my @releases = grep { $_ ne $version } split /\n/, $node->safe_psql('postgres',
	"SELECT version FROM pg_available_extension_versions WHERE name = 'pg_herald' ORDER BY string_to_array(version, '.')::int[]");
ok(@releases >= 1, "an older release is installable besides $version");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pg_herald');
my $expected = $node->safe_psql('fresh', $catalog);
like($expected, qr/^extension pg_herald \Q$version\E/m, "the fresh install is version $version");

foreach my $release (@releases)
{
	my $db = "from_" . ($release =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION pg_herald VERSION '$release'");
	$node->safe_psql($db, "ALTER EXTENSION pg_herald UPDATE");
	my $got = $node->safe_psql($db, $catalog);
	ok($got eq $expected, "$release updated to $version has the catalog of a fresh install")
	  or diag(HeraldTest::diff_lines($got, $expected));
	my $dumped = schema_dump($db);
	ok($dumped eq schema_dump('fresh'),
		"and the schema pg_dump --schema-only gives of it is a fresh install's")
	  or diag(HeraldTest::diff_lines($dumped, schema_dump('fresh')));
}

# The workers' database, at the oldest release, with history; then updated.
my $oldest = $releases[0];
my $receiver = HeraldTest::start_receiver($node);
my $offset = -s $node->logfile;
$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald VERSION '$oldest';
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
INSERT INTO herald.channel_defs (name, kind, target, max_attempts, retry_delay, timeout, created_by)
    VALUES ('hook', 'webhook', '$receiver->{url}/hook', 3, '1 second', '5 seconds', current_user);
INSERT INTO herald.event_log (type, payload) VALUES ('channel.test', '{}');
-- a row rule as 0.1.0 stored it, with its capture trigger (its API needs
-- its own library, so both are written directly)
INSERT INTO herald.rule_defs (name, kind, owner, on_table, operations)
VALUES ('old-order', 'row', current_user::regrole, 'orders', '{INSERT}');
INSERT INTO herald.rule_channels SELECT r.id, c.id FROM herald.rule_defs r, herald.channel_defs c;
CREATE TRIGGER herald_capture_insert AFTER INSERT ON orders REFERENCING NEW TABLE AS herald_new
    FOR EACH STATEMENT EXECUTE FUNCTION herald.capture();
));
$node->poll_query_until('postgres', q(
SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pg_herald delivery'))
  or die 'the delivery worker did not start';
ok(wait_for_log($node, $offset,
		qr/pg_herald \Q$oldest\E is installed in database "postgres", but the library is version \Q$version\E/),
	'the workers say that the installation waits for its update');

# writers are not hindered meanwhile: the old rule captures with this library
$node->safe_psql('postgres', 'INSERT INTO orders VALUES (100, 1)');
is($node->safe_psql('postgres', q(SELECT count(*) FROM herald.event_log WHERE rule = 'old-order')), '1',
	'before the update, the 0.1.0 rule still captures');
my ($rc, $out, $err) = $node->psql('postgres', q(SELECT herald.drop_rule('old-order')));
like($err, qr/pg_herald \Q$oldest\E is installed in this database, but the library is version \Q$version\E/,
	'before the update, the API says to update');

# The backlog, as 0.1.0 stored it: 30 events pending to channel backlog,
# 10 of them to channel flaky too (whose endpoint fails every first try);
# on backlog, one delivery tried once (HTTP 500), one leased by a worker
# of 0.1.0 (due when its lease ends, in 10 minutes), one delivered, one
# dead; an attempt of a delivery gone.  0.1.0 numbered deliveries in
# insertion order, from where the new computed ids start: renumbering
# swaps ids between rows.
$node->safe_psql('postgres', qq(
INSERT INTO herald.channel_defs (name, kind, target, max_attempts, retry_delay, timeout, created_by)
    VALUES ('backlog', 'webhook', '$receiver->{url}/backlog', 3, '1 second', '5 seconds', current_user),
           ('flaky', 'webhook', '$receiver->{url}/flaky?fail_first=1', 3, '1 second', '5 seconds', current_user);
CREATE TEMP TABLE old_events AS
WITH ev AS (
    INSERT INTO herald.event_log (type, rule_id, rule, payload)
    SELECT 'row.inserted', r.id, r.name,
           jsonb_build_object('table', 'public.orders', 'operation', 'INSERT',
                              'new', jsonb_build_object('id', 1000 + g, 'amount', g))
      FROM herald.rule_defs r, generate_series(1, 34) g
     WHERE r.name = 'old-order'
    RETURNING id)
SELECT id, row_number() OVER (ORDER BY id) AS n FROM ev;
SELECT setval('herald.delivery_queue_id_seq', (SELECT min(id) FROM old_events) * 1000000);
INSERT INTO herald.delivery_queue (event_id, channel_id)
SELECT e.id, c.id FROM old_events e, herald.channel_defs c
 WHERE e.n <= 30 AND (c.name = 'backlog' OR (c.name = 'flaky' AND e.n <= 10))
 ORDER BY e.id, c.id DESC;
INSERT INTO herald.delivery_queue (event_id, channel_id, status, attempts, next_attempt_at,
                                   leased_by, last_status, last_error, finished_at)
SELECT e.id, c.id, x.status, x.attempts, now() + x.due, x.leased_by, x.last_status, x.last_error,
       CASE WHEN x.status <> 'pending' THEN now() END
  FROM old_events e
  JOIN (VALUES (31, 'pending', 1, interval '-1 second', NULL, 500, 'HTTP 500'),
               (32, 'pending', 0, interval '10 minutes', 0, NULL, NULL),
               (33, 'delivered', 1, interval '0', NULL, 200, NULL),
               (34, 'dead', 3, interval '0', NULL, 500, 'HTTP 500'))
       AS x(n, status, attempts, due, leased_by, last_status, last_error) ON x.n = e.n,
       herald.channel_defs c
 WHERE c.name = 'backlog';
INSERT INTO herald.attempt_log (delivery_id, channel_id, attempt, started_at, latency_ms, http_status, error)
SELECT d.id, d.channel_id, a, now() - interval '1 minute', 1, d.last_status, d.last_error
  FROM herald.delivery_queue d, generate_series(1, d.attempts) a
 WHERE d.attempts > 0;
-- the attempt of a delivery gone, under the id a delivery of the backlog takes
INSERT INTO herald.attempt_log (delivery_id, channel_id, attempt, started_at, http_status)
SELECT e.id * 1000000 + c.id, c.id, 1, now() - interval '1 minute', 418
  FROM old_events e, herald.channel_defs c WHERE e.n = 30 AND c.name = 'backlog';
));
ok($node->safe_psql('postgres', q(
SELECT count(*) > 0 FROM herald.delivery_queue d, herald.delivery_queue o
 WHERE d.id = o.event_id * 1000000 + o.channel_id AND d.id <> o.id)),
	'before the update, deliveries have ids that others will take');

$node->safe_psql('postgres', 'ALTER EXTENSION pg_herald UPDATE');
my $got = $node->safe_psql('postgres', $catalog);
ok($got eq $expected, "$oldest with a backlog, updated, has the catalog of a fresh install")
  or diag(HeraldTest::diff_lines($got, $expected));
my $old_event = $node->safe_psql('postgres', q(SELECT min(id) - 1 FROM herald.events WHERE payload -> 'new' ->> 'id' = '1001'));
is($node->safe_psql('postgres', qq(
SELECT string_agg(format('%s %s %s', e.id - $old_event, d.channel, d.id - e.id * 1000000 - c.id), ',' ORDER BY e.id, d.channel)
  FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
  JOIN herald.channels c ON c.name = d.channel
 WHERE d.channel IN ('backlog', 'flaky'))),
	join(',', map { my $n = $_; ($n <= 10 ? ("$n backlog 0", "$n flaky 0") : ("$n backlog 0")) } 1 .. 34),
	'every delivery of the backlog has its computed id (event id * 1000000 + channel id)');
is($node->safe_psql('postgres', qq(
SELECT count(*) FILTER (WHERE channel_ids = ARRAY[b.id, f.id]) || ' ' || count(*) FILTER (WHERE channel_ids = ARRAY[b.id])
  FROM herald.event_log e, herald.channel_defs b, herald.channel_defs f
 WHERE (e.payload -> 'new' ->> 'id')::int > 1000 AND b.name = 'backlog' AND f.name = 'flaky')),
	'10 24', 'the events of the backlog name the channels of their deliveries');
is($node->safe_psql('postgres', qq(
SELECT string_agg(format('%s %s %s', d.event_id - $old_event, a.attempt, a.http_status), ',' ORDER BY d.event_id, a.attempt)
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE d.channel = 'backlog' AND a.started_at < now() - interval '30 seconds')),
	'31 1 500,33 1 200,34 1 500,34 2 500,34 3 500',
	'the attempts follow their deliveries; the attempt of a delivery gone is gone');

is($node->safe_psql('postgres', q(SELECT herald.flush('60 seconds'))), 't',
	'the backlog is delivered after the update');
my @backlog = @{ HeraldTest::received($receiver, '/backlog') };
my @flaky = @{ HeraldTest::received($receiver, '/flaky') };
is(scalar(@backlog), 32, 'the pending deliveries of the backlog were sent once each (the delivered and dead ones not)');
is(scalar(@flaky), 20, 'those of the failing endpoint too, each retried once');
is($node->safe_psql('postgres', qq(
SELECT string_agg(x, ' ' ORDER BY x COLLATE "C") FROM (
    SELECT DISTINCT d.webhook_id AS x FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
     WHERE d.channel IN ('backlog', 'flaky') AND e.id - $old_event <= 32) s)),
	join(' ', sort(uniq(map { $_->{webhook_id} } @backlog, @flaky))),
	'each was sent under its delivery\'s webhook-id');
is($node->safe_psql('postgres', qq(
SELECT string_agg(format('%s %s %s %s', d.channel, d.status, d.attempts, count), ',' ORDER BY d.channel, d.status, d.attempts)
  FROM (SELECT d.channel, d.status, d.attempts, count(*)
          FROM herald.deliveries d JOIN herald.events e ON e.id = d.event_id
         WHERE d.channel IN ('backlog', 'flaky')
         GROUP BY 1, 2, 3) d)),
	'backlog dead 3 1,backlog delivered 1 32,backlog delivered 2 1,flaky delivered 2 10',
	'every delivery of the backlog is delivered, the dead one is still dead');
is($node->safe_psql('postgres', qq(
SELECT string_agg(format('%s %s', a.attempt, coalesce(a.http_status::text, a.error)), ',' ORDER BY a.attempt)
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE d.channel = 'backlog' AND d.event_id = $old_event + 31)),
	'1 500,2 200', 'the delivery tried once under 0.1.0 was tried a second time');
$node->safe_psql('postgres', qq(
SELECT herald.redeliver(d.id) FROM herald.deliveries d
 WHERE d.channel = 'backlog' AND d.event_id = $old_event + 34));
is($node->safe_psql('postgres', q(SELECT herald.flush('60 seconds'))), 't', 'a dead delivery of the backlog is redelivered');
is($node->safe_psql('postgres', qq(
SELECT d.status || ' ' || d.attempts FROM herald.deliveries d
 WHERE d.channel = 'backlog' AND d.event_id = $old_event + 34)),
	'delivered 4', 'a dead delivery of the backlog is delivered when redelivered');
is(scalar(@{ HeraldTest::received($receiver, '/backlog') }), 33, 'the redelivered one was sent once');
is($node->safe_psql('postgres', q(SELECT string_agg(name, ' ' ORDER BY name) FROM herald.channels)),
	'backlog flaky hook', 'the channels survive the update');
is($node->safe_psql('postgres', q(SELECT count(*) FROM herald.events WHERE type = 'channel.test')), '1',
	'the history survives the update');
$node->safe_psql('postgres', q(
SELECT herald.on_change(name => 'order', on_table => 'orders', channels => ARRAY['hook'],
                        operations => ARRAY['INSERT']);
INSERT INTO orders VALUES (1, 10);
));
is($node->safe_psql('postgres', 'SELECT herald.flush()'), 't', 'the updated installation delivers');
is(scalar(@{ HeraldTest::received($receiver, '/hook') }), 3,
	'the receiver got the event captured before the update, the new rule\'s and the old rule\'s');

HeraldTest::stop_receiver($receiver);
my @errors = grep { !/is installed in this database, but the library is version/ }
  HeraldTest::server_log($node, 0, qr/\b(?:ERROR|PANIC):/);
is(scalar(@errors), 0, 'the server log shows no other error') or diag(join "\n", @errors);
done_testing();

# The extension's objects as pg_dump --schema-only writes them (in
# --binary-upgrade mode: plain dumps name an extension, not its objects),
# without what names one database rather than another: object ids,
# transaction ids, the dump's own restrict key, statistics, and the places
# of columns dropped by an update (they hold no data and no name).
sub schema_dump
{
	my ($db) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db failed: $err";
	$out =~ s/^SELECT \* FROM pg_catalog\.pg_restore_\w+_stats\(.*?^\);\n//msg;
	# (15 sets each dropped column's attlen, 17 and later all of a table's at once)
	$out =~ s{^(UPDATE pg_catalog\.pg_attribute\n.*?;\n)}{$1 =~ /pg\.dropped\./ ? '' : $1}msge;
	my @lines = grep {
		!/^--|^\\(?:un)?restrict |binary_upgrade_|relfrozenxid|^WHERE oid = |pg\.dropped\.|^\s*$/
	} split /\n/, $out;
	return join("\n", @lines) . "\n";
}

sub uniq
{
	my %seen;
	return grep { !$seen{$_}++ } @_;
}

# The log line may come up to the workers' idle recheck (10 s) later.
sub wait_for_log
{
	my ($node, $offset, $regexp) = @_;
	foreach (1 .. 300)
	{
		return 1 if $node->log_contains($regexp, $offset);
		select(undef, undef, undef, 0.1);
	}
	return 0;
}
