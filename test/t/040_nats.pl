# nats channels: events published to a NATS JetStream cluster.
#
# Three nats-server -js on loopback ports form a cluster (routes between
# them); the test creates a stream with 3 replicas and reads it back with a
# durable pull consumer (test/nats_tool.c, nats.c), as a service would.
#
#  1. 20,000 row events; in the middle, the server pg_herald's worker is
#     connected to is stopped, then restarted: every event is in the stream
#     exactly once (Nats-Msg-Id = webhook-id, within the duplicate window),
#     on the subject its template gives, with a hostile rule name sanitized.
#  2. The whole cluster stopped: deliveries fail and are retried; once it is
#     back, they succeed.
#  3. A subject no stream captures: dead after the channel's attempts, with
#     an error that says so.
#  4. A server whose address herald.deny_networks refuses: dead at once.
#
# Skipped when nats-server is absent (scripts/deps.sh installs it).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $nats_server = HeraldTest::program_or_skip('nats-server');

my $started = time();
my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $node = HeraldTest::new_node('main',
	"herald.deny_networks = '127.0.0.3/32, 169.254.169.254/32'\n");
my $dir = $node->basedir;

# the consumer and stream tool, built with this machine's libnats
my $tool = HeraldTest::build_nats_tool($dir);

# --- the cluster -------------------------------------------------------------
my @servers = map {
	{
		name => "n$_",
		port => PostgreSQL::Test::Cluster::get_free_port(),
		route => PostgreSQL::Test::Cluster::get_free_port(),
		monitor => PostgreSQL::Test::Cluster::get_free_port(),
	}
} (1 .. 3);
foreach my $s (@servers)
{
	my $routes = join(', ', map { "nats-route://127.0.0.1:$_->{route}" }
		  grep { $_ != $s } @servers);
	$s->{conf} = "$dir/$s->{name}.conf";
	$s->{log} = "$dir/$s->{name}.log";
	mkdir "$dir/$s->{name}";
	open(my $fh, '>', $s->{conf}) or die $!;
	print $fh <<"EOF";
server_name: $s->{name}
listen: 127.0.0.1:$s->{port}
http: 127.0.0.1:$s->{monitor}
jetstream { store_dir: "$dir/$s->{name}" }
cluster {
  name: herald
  listen: 127.0.0.1:$s->{route}
  routes: [ $routes ]
}
EOF
	close $fh;
}

# start a server and wait until it listens
sub start_server
{
	my ($s) = @_;
	$s->{process} = IPC::Run::start([ $nats_server, '-c', $s->{conf} ],
		'<', '/dev/null', '>>', $s->{log}, '2>>', $s->{log});
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $r = HTTP::Tiny->new(timeout => 1)
		  ->get("http://127.0.0.1:$s->{monitor}/varz");
		return 1 if $r->{success};
		sleep 0.1;
	}
	return 0;
}

# every running server says JetStream is ready (a quorum)
sub cluster_ready
{
	return HeraldTest::nats_ready($timeout, grep { $_->{process} } @servers);
}

sub stop_server
{
	my ($s) = @_;
	$s->{process}->signal('TERM');
	$s->{process}->finish;
	delete $s->{process};
}

END
{
	local $?;
	foreach my $s (@servers)
	{
		eval { $s->{process}->kill_kill } if $s->{process};
	}
}

ok((!grep { !start_server($_) } @servers) && cluster_ready(), 'three NATS servers run');
my $urls = join(',', map { "nats://127.0.0.1:$_->{port}" } @servers);
my $stream = `$tool stream $urls ORDERS 'orders.>' 3 2>&1`;
like($stream, qr/^stream ORDERS replicas=3$/m, 'a stream with 3 replicas captures orders.>');

# --- pg_herald ----------------------------------------------------------------
# one session for every query: a new psql per poll takes seconds on a busy
# machine
my $session = $node->background_psql('postgres', on_error_stop => 1);
sub sql { return $session->query_safe($_[0]); }
my $hosts = join(',', map { "127.0.0.1:$_->{port}" } @servers);
sql(qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'bus', kind => 'nats',
                             target => 'nats://$hosts/orders.{{rule}}.{{type}}',
                             headers => '{"X-Team": "sales"}',
                             timeout => '2 seconds', retry_delay => '100 milliseconds',
                             max_attempts => 100, max_concurrency => 1000);
SELECT herald.on_change(name => 'big order.*>\$JS', on_table => 'orders', channels => ARRAY['bus'],
                        operations => ARRAY['INSERT'], message => 'Order {{new.id}}');
));

sub delivered
{
	return sql("SELECT count(*) FROM herald.deliveries WHERE status = 'delivered'");
}

# the server the worker publishes through: its monitoring lists the client
sub connected_server
{
	foreach my $s (@servers)
	{
		my $r = HTTP::Tiny->new(timeout => 2)
		  ->get("http://127.0.0.1:$s->{monitor}/connz");
		return $s if $r->{success} && $r->{content} =~ /"name": ?"pg_herald/;
	}
	return undef;
}

# 10,000 events, then 10,000 more in 100 commits while the server the
# worker publishes through is killed (SIGKILL: publishes in flight are lost
# with it) and later restarted
sql(q(
INSERT INTO orders SELECT g, g FROM generate_series(1, 10000) g;
CREATE PROCEDURE paced() LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0 .. 99 LOOP
        INSERT INTO orders SELECT g, g FROM generate_series(10001 + i * 100, 10100 + i * 100) g;
        COMMIT;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
));
is(sql("SELECT herald.flush('60 seconds')"), 't',
	'the first 10,000 deliveries finish');
my $victim = connected_server();
ok($victim, 'the worker is connected to one of the servers');
$victim //= $servers[0];
my ($producer_out, $producer_err) = ('', '');
my $producer = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', 'CALL paced()' ],
	'<', '/dev/null', '>', \$producer_out, '2>', \$producer_err);
# the producer commits for 5 s at least: 1.5 s in, events are flowing
sleep 1.5;
ok($producer->pumpable, 'the server is killed while events are still being committed');
$victim->{process}->signal('KILL');
$victim->{process}->finish;
delete $victim->{process};
note("killed $victim->{name} after " . delivered() . ' deliveries');
$producer->finish;
is($producer_err, '', 'the second 10,000 events are committed');
ok(start_server($victim) && cluster_ready(), "$victim->{name} restarts");
my $deadline;
is(sql("SELECT herald.flush('90 seconds')"), 't',
	'the 20,000 deliveries finish');
is(delivered(), 20000, 'every delivery is delivered');
my $retried = sql(
	'SELECT count(*) FROM herald.deliveries WHERE attempts > 1');
note("$retried deliveries took more than one attempt");

my $consumed = `$tool consume $urls ORDERS 'orders.>' herald-test 20000 5 2>&1`;
like($consumed, qr/^received=20000 distinct=20000 duplicates=0$/m,
	'a durable consumer reads every event exactly once');
like($consumed, qr/^subject=orders\.big_order____JS\.row_inserted$/m,
	'the subject is the template with the hostile rule name sanitized');
my ($webhook_id) = $consumed =~ /^webhook-id=(msg_\S+)$/m;
ok($webhook_id, 'the message carries its webhook-id');
like($consumed, qr/^body=\{"type": "row.inserted".*"message": "Order \d+"/m,
	'the body is the webhook JSON');
is(`$tool count $urls ORDERS`, "20000\n", 'the stream holds 20,000 messages');

# --- the whole cluster stopped --------------------------------------------------
$_->{process}->signal('TERM') foreach @servers;
stop_server($_) foreach @servers;
sql(
	'INSERT INTO orders SELECT g, g FROM generate_series(20001, 20050) g');
$deadline = time() + $timeout;
my $failing = 0;
while (time() < $deadline)
{
	$failing = sql(
		"SELECT count(*) FROM herald.deliveries WHERE status = 'pending' AND attempts >= 2");
	last if $failing == 50;
	sleep 0.1;
}
is($failing, 50, 'with the cluster stopped, the new deliveries fail and are retried');
my $error = sql(
	"SELECT last_error FROM herald.deliveries WHERE status = 'pending' LIMIT 1");
like($error, qr/NATS|JetStream/, 'their error names NATS');
note("error while stopped: $error");
ok((!grep { !start_server($_) } @servers) && cluster_ready(), 'the cluster restarts');
is(sql("SELECT herald.flush('60 seconds')"), 't',
	'the retried deliveries finish');
is(delivered(), 20050, 'and are delivered');
$consumed = `$tool consume $urls ORDERS 'orders.>' herald-test 50 5 2>&1`;
like($consumed, qr/^received=50 distinct=50 duplicates=0$/m,
	'the durable consumer reads the 50 new events once');

# --- no stream, denied address ------------------------------------------------------
sql(qq(
SELECT herald.create_channel(name => 'nowhere', kind => 'nats',
                             target => 'nats://$hosts/unrouted.{{type}}',
                             max_attempts => 2, retry_delay => '100 milliseconds');
SELECT herald.create_channel(name => 'denied', kind => 'nats',
                             target => 'nats://127.0.0.3:$servers[0]{port}/orders.denied',
                             max_attempts => 5);
SELECT herald.test_channel('nowhere');
SELECT herald.test_channel('denied');
));
is(sql("SELECT herald.flush('30 seconds')"), 't',
	'the deliveries to the wrong subject and the denied server finish');
is( sql(
		"SELECT status || ' ' || attempts || ' ' || last_error FROM herald.deliveries d WHERE channel = 'nowhere'"),
	'dead 2 no JetStream stream stores subject "unrouted.channel_test" (the server answered 503, no responders)',
	'a subject no stream captures ends dead with a clear error');
like( sql(
		"SELECT status || ' ' || attempts || ' ' || last_error FROM herald.deliveries d WHERE channel = 'denied'"),
	qr/^dead 1 connection to 127\.0\.0\.3 refused by herald\.deny_networks/,
	'a server in a denied network is refused at the first attempt');

HeraldTest::no_server_errors($node);
my $elapsed = time() - $started;
note(sprintf('040_nats took %.1f s', $elapsed));
$session->quit;
$node->stop;
done_testing();
