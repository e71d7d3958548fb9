# Upgrades: an installation of the oldest release, updated with ALTER
# EXTENSION pg_herald UPDATE, has the same catalog as a fresh install of this
# version (test/catalog.sql lists every object, column, index, trigger,
# privilege and comment), keeps its channels, rules and history, and works.
# While it still runs the old version, the workers leave it alone and say
# why in the log.

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

$node->safe_psql('postgres', 'ALTER EXTENSION pg_herald UPDATE');
is($node->safe_psql('postgres', q(SELECT name FROM herald.channels)), 'hook',
	'the channel survives the update');
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
