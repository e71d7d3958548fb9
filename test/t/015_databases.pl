# Every database of a cluster: the launcher (src/launcher.c).
#
# With herald.database = '' (every database), three databases with
# pg_herald each get their own scheduler and delivery worker, which deliver
# that database's events (pg_stat_activity names the database of each
# worker; each database's deliveries are recorded there, by them).  A
# database without pg_herald gets none.  DROP EXTENSION stops the workers of
# its database; a plain DROP DATABASE (no FORCE) of a served database
# succeeds, its workers stopped first; a role that does not own a database
# cannot stop its workers with a DROP DATABASE that fails; ALTER DATABASE
# RENAME and CREATE DATABASE ... TEMPLATE work and the workers come back
# (the copy, which holds pg_herald, is served too).  CREATE EXTENSION in a fourth
# database starts its workers without a restart, within a bounded wait.  A
# pg_restore into the cluster, one table at a time, sends no restored event
# again: the workers wait for it to end.
# Then, on a second node with max_worker_processes = 5 and
# herald.max_databases = 2: a database whose delivery worker finds no free
# worker slot, and one beyond herald.max_databases, are not served and
# herald.status says why; once another database drops pg_herald, the first
# is served.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

my $node = HeraldTest::new_node('main',
	"herald.database = ''\nmax_worker_processes = 16\n");
my $receiver = HeraldTest::start_receiver($node);

# pg_herald's workers of a database: "backend_type count", one per line
sub workers_of
{
	my ($n, $db) = @_;
	return $n->safe_psql('postgres', qq(
SELECT backend_type || ' ' || count(*) FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_herald%' AND datname = '$db'
 GROUP BY backend_type ORDER BY backend_type));
}

my $served = "pg_herald delivery 1\npg_herald scheduler 1";

sub install
{
	my ($db) = @_;
	$node->safe_psql($db, qq(
CREATE EXTENSION pg_herald;
CREATE TABLE IF NOT EXISTS orders(id int PRIMARY KEY);
SELECT herald.create_channel(name => 'hook', kind => 'webhook',
                             target => '$receiver->{url}/$db');
SELECT herald.on_change(name => 'orders', on_table => 'orders', channels => ARRAY['hook'],
                        operations => ARRAY['INSERT']);
));
	return;
}

# insert $n rows in $db and wait for their deliveries; how many were delivered
sub deliver
{
	my ($db, $first, $n) = @_;
	$node->safe_psql($db,
		"INSERT INTO orders SELECT g FROM generate_series($first, $first + $n - 1) g");
	is($node->safe_psql($db, "SELECT herald.flush('60 seconds')"), 't',
		"$db: herald.flush() completes");
	return $node->safe_psql($db,
		"SELECT count(*) FROM herald.deliveries WHERE status = 'delivered'");
}

# ---- three databases ----
foreach my $db ('db1', 'db2', 'db3', 'plain')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
install($_) foreach ('db1', 'db2', 'db3');

foreach my $db ('db1', 'db2', 'db3')
{
	ok($node->poll_query_until('postgres', qq(
SELECT count(*) = 2 FROM pg_stat_activity
 WHERE backend_type IN ('pg_herald delivery', 'pg_herald scheduler') AND datname = '$db')),
		"$db: a scheduler and a delivery worker run in it");
	is($node->safe_psql($db, 'SELECT served, reason IS NULL FROM herald.status'),
		 't|t', "$db: herald.status says it is served");
}
is(workers_of($node, 'plain'), '', 'a database without pg_herald has no worker');
is( $node->safe_psql('postgres', q(
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_herald launcher' AND datname IS NULL)),
	'1', 'one launcher, connected to no database');

my %n = (db1 => 20, db2 => 30, db3 => 40);
foreach my $db ('db1', 'db2', 'db3')
{
	is(deliver($db, 1, $n{$db}), $n{$db}, "$db: its $n{$db} events are delivered");
	is(scalar(@{ HeraldTest::received($receiver, "/$db") }), $n{$db},
		"$db: the receiver got $n{$db} requests for it");
}

# ---- DROP EXTENSION stops the database's workers, and only them ----
$node->safe_psql('db2', 'DROP EXTENSION pg_herald CASCADE');
ok($node->poll_query_until('postgres', q(
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_herald%' AND datname = 'db2')),
	'db2: DROP EXTENSION stops its workers');
is(workers_of($node, 'db1'), $served, 'db1 keeps its workers');

# ---- a DROP DATABASE that fails stops nothing ----
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN');
my $pids = $node->safe_psql('postgres', q(
SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_herald%' AND datname = 'db1'));
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db1', extra_params => ['-U', 'mallory']);
like($err, qr/must be owner of database db1/, 'a role that does not own db1 cannot drop it');
my $log_offset = -s $node->logfile;    # that error was on purpose
is( $node->safe_psql('postgres', q(
SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_herald%' AND datname = 'db1')),
	$pids, "db1: its workers were left alone");

# ---- plain DROP DATABASE of a served database ----
my $t0 = time();
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db3');
is($ret, 0, 'DROP DATABASE (no FORCE) of a served database succeeds')
  or diag($err);
note(sprintf('DROP DATABASE db3 took %.2f s', time() - $t0));
is( $node->safe_psql('postgres', q(
SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_herald%' AND datname = 'db3')),
	'0', 'db3: no worker is left');

# ---- ALTER DATABASE RENAME: the workers stop for it and come back ----
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE db1 RENAME TO db1b');
is($ret, 0, 'ALTER DATABASE RENAME of a served database succeeds') or diag($err);
ok($node->poll_query_until('postgres', q(
SELECT count(*) = 2 FROM pg_stat_activity
 WHERE backend_type IN ('pg_herald delivery', 'pg_herald scheduler') AND datname = 'db1b')),
	'db1b: its workers run again after the rename');
is(deliver('db1b', 1000, 5), 25, 'db1b: new events are delivered');

# ---- CREATE EXTENSION in a fourth database, no restart ----
$node->safe_psql('postgres', 'CREATE DATABASE db4');
$t0 = time();
install('db4');
my $deadline = time() + $timeout;
sleep 0.01 while workers_of($node, 'db4') ne $served && time() < $deadline;
is(workers_of($node, 'db4'), $served, 'db4: CREATE EXTENSION starts its workers');
note(sprintf('db4: workers running %.2f s after CREATE EXTENSION began', time() - $t0));
ok(time() - $t0 < 10, 'db4: within 10 seconds');
is(deliver('db4', 1, 7), 7, 'db4: its events are delivered');

# ---- CREATE DATABASE ... TEMPLATE a served database ----
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE db5 TEMPLATE db4');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE of a served database succeeds') or diag($err);
ok($node->poll_query_until('postgres', q(
SELECT count(*) = 4 FROM pg_stat_activity
 WHERE backend_type IN ('pg_herald delivery', 'pg_herald scheduler') AND datname IN ('db4', 'db5'))),
	'the copy (pg_herald in it) is served, and the template again');

# ---- pg_restore into the served cluster, one table at a time ----
# Without --single-transaction, pg_restore commits CREATE EXTENSION, then
# loads each table in a transaction of its own.  A slow table (its domain
# sleeps 0.5 s per value; schema aaa sorts before herald) holds the restore
# 4 s between the two: workers started then would find the restored events
# before their delivery positions and attempts, and send them all again.
$node->safe_psql('postgres', 'CREATE DATABASE rsrc');
install('rsrc');
is(deliver('rsrc', 1, 50), 50, 'rsrc: 50 events delivered before the dump');
$node->safe_psql('rsrc', q(
CREATE SCHEMA aaa;
CREATE FUNCTION aaa.slow(int) RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(0.5) IS NOT NULL';
CREATE DOMAIN aaa.slow_int AS int CHECK (aaa.slow(VALUE));
CREATE TABLE aaa.gate (v aaa.slow_int);
INSERT INTO aaa.gate SELECT generate_series(1, 8);
));
my $dump = "$PostgreSQL::Test::Utils::tmp_check/rsrc.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, 'rsrc' ], 'pg_dump of rsrc');
$node->safe_psql('postgres', 'CREATE DATABASE rdst');
my $restore_offset = -s $node->logfile;
{
	# pg_restore's own application_name, which the test framework's PGAPPNAME hides
	local $ENV{PGAPPNAME};
	delete $ENV{PGAPPNAME};
	$node->command_ok([ 'pg_restore', '-d', 'rdst', $dump ], 'pg_restore into rdst, table by table');
}
is(scalar(HeraldTest::server_log($node, $restore_offset,
			qr/pg_restore \(process \d+\) is connected to database "rdst": pg_herald delivery worker 0 waits until it ends/)),
	1, 'rdst: its delivery worker waited for pg_restore, and said so once');
is(deliver('rdst', 1000, 5), 55, 'rdst: served after the restore: 50 restored deliveries and 5 new');
is(HeraldTest::receiver_arrivals($receiver, '/rsrc'), 55,
	'no restored event was sent again: 50 from rsrc, then the 5 new ones from rdst');

# db2 again: CREATE EXTENSION after its DROP EXTENSION
install('db2');
ok($node->poll_query_until('postgres', q(
SELECT count(*) = 2 FROM pg_stat_activity
 WHERE backend_type IN ('pg_herald delivery', 'pg_herald scheduler') AND datname = 'db2')),
	'db2: CREATE EXTENSION again starts its workers again');
HeraldTest::no_server_errors($node, $log_offset);
$node->stop;

# ---- max_worker_processes and herald.max_databases reached ----
my $small = HeraldTest::new_node('small',
	"herald.database = ''\nmax_worker_processes = 5\nherald.max_databases = 2\n"
	  . "max_parallel_workers = 0\n");
$node = $small;
$small->safe_psql('postgres', "CREATE DATABASE $_") foreach ('a', 'b', 'c');
install('a');
ok($small->poll_query_until('a', 'SELECT delivery_workers = 1 AND scheduler FROM herald.status'),
	'a: served (launcher, logical replication launcher, 2 workers: 4 of 5 worker slots)');
install('b');
ok($small->poll_query_until('b',
		q(SELECT NOT served AND reason LIKE '%max_worker_processes%' FROM herald.status)),
	'b: no slot for its delivery worker: herald.status says max_worker_processes');
install('c');
ok($small->poll_query_until('c',
		q(SELECT NOT served AND reason LIKE '%herald.max_databases%' FROM herald.status)),
	'c: beyond herald.max_databases: herald.status says so');
is(scalar(HeraldTest::server_log($small, 0,
			qr/could not start the delivery workers of database "b"/)), 1,
	'the launcher logged it once');
# c holds no slot: dropped, it takes none of what a leaves
$small->safe_psql('postgres', 'DROP DATABASE c');
$small->safe_psql('a', 'DROP EXTENSION pg_herald CASCADE');
ok($small->poll_query_until('b', 'SELECT served AND delivery_workers = 1 FROM herald.status'),
	'b: served once a dropped pg_herald');
is(deliver('b', 1, 3), 3, 'b: its events are delivered');
$small->stop;

done_testing();
