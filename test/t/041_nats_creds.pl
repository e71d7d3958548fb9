# nats channels with .creds secrets, against a nats-server in operator mode.
#
# test/nats_tool.c makes the operator, its system account and an account
# APP with JetStream (account JWT limits with storage), and users of APP as
# .creds files; one nats-server trusts the operator and preloads the
# accounts (resolver: MEMORY).  Then:
#  1. a channel whose secret is a user's .creds content delivers into a
#     JetStream stream, read back by a consumer that logs in with the same
#     .creds file through nats.c's own parser;
#  2. the same JWT with another user's seed, a revoked user, an expired user
#     and no credentials at all: refused by the server, each delivery dead
#     after the channel's attempts with an authorization error;
#  3. a corrupt .creds is refused at declaration (22023);
#  4. no seed and no JWT shows in last_error, herald.channels, the server
#     log of PostgreSQL (not even the refused statement) or of NATS.
#
# Skipped when nats-server is absent (scripts/deps.sh installs it).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $nats_server = HeraldTest::program_or_skip('nats-server');

my $started = time();
my $timeout = $PostgreSQL::Test::Utils::timeout_default;
# log_statement = all (the test clusters' default) would log every secret
# given in a statement: pg_herald's own messages are what is checked here
my $node = HeraldTest::new_node('main', "log_statement = none\n");
my $dir = $node->basedir;

my $tool = HeraldTest::build_nats_tool($dir);

# --- the operator, its accounts and users; the server ----------------------------
my $keys = `$tool creds $dir 2>&1`;
like($keys, qr/^operator=O[A-Z2-7]{55} app=A[A-Z2-7]{55} good=U[A-Z2-7]{55}$/m,
	'an operator, an account and users are made');
my %creds = map { $_ => slurp_file("$dir/$_.creds") }
  qw(good wrong-seed revoked expired);
my %seed;
my %jwt;
foreach my $name (keys %creds)
{
	($jwt{$name}) = $creds{$name} =~ /JWT-----\n(\S+)\n/;
	($seed{$name}) = $creds{$name} =~ /SEED-----\n(SU[A-Z2-7]+)\n/;
}
ok($seed{good} && $jwt{good}, 'the .creds files hold a JWT and a user seed');

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $nats_log = "$dir/nats.log";
mkdir "$dir/js";
open(my $fh, '>', "$dir/nats.conf") or die $!;
print $fh <<"EOF";
listen: 127.0.0.1:$port
operator: $dir/operator.jwt
include server.conf-resolver
jetstream { store_dir: "$dir/js" }
EOF
close $fh;
my $server = IPC::Run::start([ $nats_server, '-c', "$dir/nats.conf" ],
	'<', '/dev/null', '>>', $nats_log, '2>>', $nats_log);
END
{
	local $?;
	eval { $server->kill_kill } if $server;
}
my $url = "nats://127.0.0.1:$port";
my $stream = '';
my $deadline = time() + $timeout;
while (time() < $deadline)
{
	# the tool retries while JetStream starts; before the server listens it
	# fails at once
	$stream = `NATS_TOOL_CREDS=$dir/good.creds $tool stream $url ORDERS 'orders.>' 1 2>&1`;
	last if $stream =~ /^stream /m;
	sleep 0.1;
}
like($stream, qr/^stream ORDERS replicas=1$/m,
	'the good user creates a stream in a server in operator mode');
like(`$tool count $url ORDERS 2>&1`, qr/Authorization Violation/,
	'the server refuses a client without credentials');

# --- pg_herald ----------------------------------------------------------------
my $session = $node->background_psql('postgres', on_error_stop => 1);
sub sql { return $session->query_safe($_[0]); }
sub quoted { return '$creds$' . $_[0] . '$creds$'; }

sql(qq(
CREATE EXTENSION pg_herald;
CREATE TABLE orders(id int PRIMARY KEY, amount numeric);
SELECT herald.create_channel(name => 'bus', kind => 'nats',
                             target => '$url/orders.{{type}}',
                             secret => ${\ quoted($creds{good})},
                             timeout => '5 seconds', retry_delay => '100 milliseconds');
SELECT herald.on_change(name => 'orders', on_table => 'orders', channels => ARRAY['bus'],
                        operations => ARRAY['INSERT'], message => 'Order {{new.id}}');
INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g;
));
is(sql("SELECT herald.flush('30 seconds')"), 't', 'the deliveries finish');
is(sql("SELECT string_agg(DISTINCT status || ' ' || attempts, ',') FROM herald.deliveries WHERE channel = 'bus'"),
	'delivered 1', 'all 50 are delivered at the first attempt');
my $consumed = `NATS_TOOL_CREDS=$dir/good.creds $tool consume $url ORDERS 'orders.>' creds-test 50 5 2>&1`;
like($consumed, qr/^received=50 distinct=50 duplicates=0$/m,
	'a consumer logged in with the .creds file reads the 50 events once');
like($consumed, qr/^subject=orders\.row_inserted$/m, 'on the subject of the template');

# --- refused credentials --------------------------------------------------------
foreach my $case ([ 'wrong-seed', $creds{'wrong-seed'} ],
	[ 'revoked', $creds{revoked} ], [ 'expired', $creds{expired} ],
	[ 'anonymous', undef ])
{
	my ($name, $secret) = @$case;
	my $s = defined $secret ? quoted($secret) : 'NULL';
	sql(qq(
SELECT herald.create_channel(name => '$name', kind => 'nats', target => '$url/orders.{{type}}',
                             secret => $s, max_attempts => 3,
                             retry_delay => '100 milliseconds');
SELECT herald.test_channel('$name');
));
}
is(sql("SELECT herald.flush('30 seconds')"), 't', 'the refused deliveries finish');
foreach my $name (qw(wrong-seed revoked expired anonymous))
{
	like(sql("SELECT status || ' ' || attempts || ' ' || last_error FROM herald.deliveries WHERE channel = '$name'"),
		qr/^dead 3 could not connect to NATS: .*Authorization Violation/,
		"$name: refused by the server, dead after 3 attempts, with an authorization error");
}
is(sql("SELECT count(*) FROM herald.deliveries WHERE channel = 'bus'"), '50',
	'nothing else went to the stream');
like(`NATS_TOOL_CREDS=$dir/good.creds $tool count $url ORDERS`, qr/^50$/m,
	'the stream holds the 50 events only');

# the workers logged no error (the refusals below are errors on purpose)
HeraldTest::no_server_errors($node);

# --- declaration -----------------------------------------------------------------
my $log_offset = -s $node->logfile;
my $corrupt = $creds{good};
$corrupt =~ s/(SEED-----\nSU)(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;
my ($rc, $out, $err) = $node->psql('postgres', qq(
SELECT herald.create_channel(name => 'corrupt', kind => 'nats', target => '$url/orders',
                             secret => ${\ quoted($corrupt)});
));
like($err, qr/ERROR:  the nkey seed in the \.creds secret of a nats channel is corrupt/,
	'a .creds with a corrupt seed is refused at declaration');
($rc, $out, $err) = $node->psql('postgres', q(
\set VERBOSITY verbose
SELECT herald.alter_channel('bus', secret => E'-----BEGIN NATS USER JWT-----\nnot-a-jwt\n------END NATS USER JWT------\n');
));
like($err, qr/ERROR:  22023: the user JWT in the \.creds secret of a nats channel is not three base64url parts/,
	'so is a JWT that is not three base64url parts, with SQLSTATE 22023');

# --- the secrets never show -------------------------------------------------------
my $pg_log = slurp_file($node->logfile);
my $nats_text = slurp_file($nats_log);
my $errors = sql('SELECT string_agg(coalesce(last_error, \'\'), \' \') FROM herald.deliveries');
my $channels = sql('SELECT string_agg(c::text, \' \') FROM herald.channels c');
my $corrupt_seed = ($corrupt =~ /SEED-----\n(SU[A-Z2-7]+)\n/)[0];
my @leaks;
foreach my $secret ((values %seed), (values %jwt), $corrupt_seed)
{
	# a seed or a JWT whole, or its last 20 characters (its key, its signature)
	foreach my $needle ($secret, substr($secret, -20))
	{
		push @leaks, 'the PostgreSQL log' if index($pg_log, $needle) >= 0;
		push @leaks, 'the NATS log' if index($nats_text, $needle) >= 0;
		push @leaks, 'last_error' if index($errors, $needle) >= 0;
		push @leaks, 'herald.channels' if index($channels, $needle) >= 0;
	}
}
is(join(', ', @leaks), '', 'no seed and no JWT shows in a log, an error or a view');
like(substr($pg_log, $log_offset), qr/ERROR:  the nkey seed/,
	'the PostgreSQL log has the refusal (without the statement)');

note(sprintf('041_nats_creds took %.1f s', time() - $started));
$session->quit;
$node->stop;
done_testing();
