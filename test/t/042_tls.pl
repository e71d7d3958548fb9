# TLS to private endpoints: tls:// nats channels and HTTPS webhooks, trusted
# through herald.ca_file.
#
# openssl makes a CA and two server certificates signed by it: one for
# localhost and 127.0.0.1, one for another name.  Three nats-server: one
# with TLS and JetStream (the good certificate), one with TLS and the other
# name's certificate, one without TLS; two HTTPS receivers (test/receiver.py)
# with the two certificates.
#
#  1. herald.ca_file empty: the private CA is unknown, so a tls:// publish
#     and an HTTPS request fail with a certificate error, and are retried.
#  2. herald.ca_file set, reload: the retries are delivered, the message is
#     in the stream and the receiver has the request.
#  3. A tls:// target by name (localhost) is delivered.  Refused, at the
#     first attempt, with a clear error: a certificate for
#     another name (NATS and HTTPS), tls:// to a server without TLS,
#     nats:// to a server that requires TLS, and a denied address behind
#     TLS (the network policy still applies).
#  4. herald.ca_file naming a missing file, then a file without a
#     certificate: each attempt fails saying so; set right again, the
#     deliveries go through.
#
# Skipped when nats-server or openssl is absent (scripts/deps.sh installs
# them).

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
my $openssl = HeraldTest::program_or_skip('openssl');

my $started = time();
my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $node = HeraldTest::new_node('main',
	"herald.deny_networks = '127.0.0.3/32, 169.254.169.254/32'\n");
my $dir = $node->basedir;

# --- certificates ----------------------------------------------------------------
sub openssl
{
	my @args = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $openssl, @args ], '<', '/dev/null', '>', \$out, '2>', \$err)
	  or BAIL_OUT("openssl @args[0 .. 1] failed: $err");
	return;
}
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
	'-keyout', "$dir/ca.key", '-out', "$dir/ca.pem", '-subj', '/CN=pg_herald test CA',
	'-addext', 'basicConstraints=critical,CA:TRUE',
	'-addext', 'keyUsage=critical,keyCertSign,cRLSign');
foreach my $cert ([ 'good', 'localhost', 'DNS:localhost,IP:127.0.0.1' ],
	[ 'other', 'other.example', 'DNS:other.example' ])
{
	my ($name, $cn, $san) = @$cert;
	openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.csr", '-subj', "/CN=$cn");
	open(my $fh, '>', "$dir/$name.ext") or die $!;
	print $fh "subjectAltName=$san\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
	close $fh;
	openssl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/ca.pem",
		'-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2',
		'-out', "$dir/$name.pem", '-extfile', "$dir/$name.ext");
}
my $ca = "$dir/ca.pem";

# --- NATS servers --------------------------------------------------------------------
my %servers;
foreach my $name ('good', 'other', 'plain')
{
	my $s = {
		name => $name,
		port => PostgreSQL::Test::Cluster::get_free_port(),
		monitor => PostgreSQL::Test::Cluster::get_free_port(),
		log => "$dir/nats-$name.log",
	};
	my $tls = $name eq 'plain' ? '' : <<"EOF";
tls {
  cert_file: "$dir/$name.pem"
  key_file: "$dir/$name.key"
}
EOF
	mkdir "$dir/js-$name";
	$s->{conf} = "$dir/nats-$name.conf";
	open(my $fh, '>', $s->{conf}) or die $!;
	print $fh <<"EOF";
server_name: $name
listen: 127.0.0.1:$s->{port}
http: 127.0.0.1:$s->{monitor}
jetstream { store_dir: "$dir/js-$name" }
$tls
EOF
	close $fh;
	$s->{process} = IPC::Run::start([ $nats_server, '-c', $s->{conf} ],
		'<', '/dev/null', '>>', $s->{log}, '2>>', $s->{log});
	$servers{$name} = $s;
}

END
{
	local $?;
	foreach my $s (values %servers)
	{
		eval { $s->{process}->kill_kill } if $s->{process};
	}
}

# every server answers its monitoring port, and JetStream is ready
sub servers_ready
{
	return HeraldTest::nats_ready($timeout, values %servers);
}
ok(servers_ready(), 'three NATS servers run');

# the stream tool, built with this machine's libnats; it trusts the test CA
# through OpenSSL's SSL_CERT_FILE
my $tool = HeraldTest::build_nats_tool($dir);
# addresses rather than localhost in the targets: a name may resolve to ::1
# too, where no server listens, and the error would be that one's
my $good_url = "tls://127.0.0.1:$servers{good}{port}";
$ENV{SSL_CERT_FILE} = $ca;
my $stream = `$tool stream $good_url PRIVATE 'private.>' 1 2>&1`;
like($stream, qr/^stream PRIVATE replicas=1$/m,
	'a stream on the TLS server captures private.>');
delete $ENV{SSL_CERT_FILE};

# --- HTTPS receivers -------------------------------------------------------------------
my $https = HeraldTest::start_receiver($node, '127.0.0.1', name => 'good',
	tls_cert => "$dir/good.pem", tls_key => "$dir/good.key");
my $https_other = HeraldTest::start_receiver($node, '127.0.0.1', name => 'other',
	tls_cert => "$dir/other.pem", tls_key => "$dir/other.key");

# --- the setting ----------------------------------------------------------------------
my $session = $node->background_psql('postgres', on_error_stop => 1);
sub sql { return $session->query_safe($_[0]); }

sub set_ca_file
{
	my ($value) = @_;
	sql("ALTER SYSTEM SET herald.ca_file = '$value'; SELECT pg_reload_conf();");
	return;
}

# poll until the query returns true
sub wait_for
{
	my ($query) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if sql($query) eq 't';
		sleep 0.1;
	}
	return 0;
}

sub outcome
{
	my ($channel) = @_;
	return sql(
		"SELECT status || ' ' || attempts || ' ' || coalesce(last_error, '') FROM herald.deliveries WHERE channel = '$channel' ORDER BY id DESC LIMIT 1"
	);
}

sql(qq(
CREATE EXTENSION pg_herald;
SELECT herald.create_channel(name => 'bus', kind => 'nats',
                             target => '$good_url/private.{{type}}',
                             timeout => '2 seconds', retry_delay => '100 milliseconds',
                             max_attempts => 100);
SELECT herald.create_channel(name => 'hook', kind => 'webhook',
                             target => '$https->{url}/hook',
                             timeout => '2 seconds', retry_delay => '100 milliseconds',
                             max_attempts => 100);
SELECT herald.test_channel('bus');
SELECT herald.test_channel('hook');
));

# 1. the system's CAs only: the private CA is unknown
ok( wait_for(
		"SELECT count(*) = 2 FROM herald.deliveries WHERE status = 'pending' AND attempts >= 2"),
	'without herald.ca_file, the tls:// publish and the HTTPS request fail and are retried');
like(outcome('bus'),
	qr/^pending \d+ could not connect to NATS: SSL Error \(SSL handshake error: 20:unable to get local issuer certificate/,
	'the NATS error says the certificate is not trusted');
# libcurl's own wording differs between versions (Debian 12's 7.88 and
# sid's): the patterns take both
like(outcome('hook'),
	qr/^pending \d+ SSL peer certificate or SSH remote key was not OK: SSL certificate (?:problem|OpenSSL verify result): unable to get local issuer certificate(?: \(20\))?$/,
	'the HTTPS error says the certificate is not trusted');
is(HeraldTest::receiver_lines($https), 0, 'the receiver got no request');

# 2. the private CA trusted: the retries go through
set_ca_file($ca);
is(sql("SELECT herald.flush('30 seconds')"), 't', 'with herald.ca_file, the retries finish');
like(outcome('bus'), qr/^delivered /, 'the tls:// publish is delivered');
like(outcome('hook'), qr/^delivered /, 'the HTTPS request is delivered');
$ENV{SSL_CERT_FILE} = $ca;
is(`$tool count $good_url PRIVATE 2>&1`, "1\n", 'the stream holds the message');
delete $ENV{SSL_CERT_FILE};
my $requests = HeraldTest::received($https, '/hook');
is(scalar(@$requests), 1, 'the HTTPS receiver got the request');

# 3. refused at the first attempt
my $denied_https = $https->{url} =~ s/127\.0\.0\.1/127.0.0.3/r;
sql(qq(
SELECT herald.create_channel(name => 'bus_other', kind => 'nats',
                             target => 'tls://127.0.0.1:$servers{other}{port}/private.x',
                             max_attempts => 1);
SELECT herald.create_channel(name => 'hook_other', kind => 'webhook',
                             target => '$https_other->{url}/hook', max_attempts => 1);
SELECT herald.create_channel(name => 'bus_plain_server', kind => 'nats',
                             target => 'tls://127.0.0.1:$servers{plain}{port}/private.x',
                             max_attempts => 1);
SELECT herald.create_channel(name => 'bus_plain_target', kind => 'nats',
                             target => 'nats://127.0.0.1:$servers{good}{port}/private.x',
                             max_attempts => 1);
SELECT herald.create_channel(name => 'bus_name', kind => 'nats',
                             target => 'tls://localhost:$servers{good}{port}/private.x',
                             max_attempts => 1);
SELECT herald.create_channel(name => 'bus_denied', kind => 'nats',
                             target => 'tls://127.0.0.3:$servers{good}{port}/private.x',
                             max_attempts => 1);
SELECT herald.create_channel(name => 'hook_denied', kind => 'webhook',
                             target => '$denied_https/hook', max_attempts => 1);
SELECT herald.test_channel(name) FROM herald.channel_defs
 WHERE name IN ('bus_other', 'hook_other', 'bus_plain_server', 'bus_plain_target',
                'bus_name', 'bus_denied', 'hook_denied');
));
is(sql("SELECT herald.flush('30 seconds')"), 't', 'the refused deliveries finish');
like(outcome('bus_name'), qr/^delivered 1 /,
	'NATS: a certificate for the name of the target is accepted');
like(outcome('bus_other'),
	qr/^dead 1 could not connect to NATS: SSL Error \(SSL handshake error: 64:IP address mismatch:depth=0:cert=\/CN=other\.example/,
	'NATS: a certificate for another name is refused');
like(outcome('hook_other'),
	qr/^dead 1 SSL peer certificate or SSH remote key was not OK: SSL: no alternative certificate subject name matches target (?i:host name|ipv4 address) '127\.0\.0\.1'$/,
	'HTTPS: a certificate for another name is refused');
is(outcome('bus_plain_server'),
	'dead 1 could not connect to NATS: the server does not offer TLS, and the target is tls://',
	'tls:// to a server without TLS is refused');
is(outcome('bus_plain_target'),
	'dead 1 could not connect to NATS: the server requires TLS, and the target is nats:// (write tls:// for TLS)',
	'nats:// to a server that requires TLS is refused');
like(outcome('bus_denied'),
	qr/^dead 1 connection to 127\.0\.0\.3 refused by herald\.deny_networks/,
	'NATS: the network policy applies under TLS');
like(outcome('hook_denied'),
	qr/^dead 1 .*connection to 127\.0\.0\.3 refused by herald\.deny_networks/,
	'HTTPS: the network policy applies under TLS');
is(HeraldTest::receiver_lines($https_other), 0,
	'the receiver with the other name got no request');

# 4. an unreadable file, then one without a certificate: each attempt says
# so.  Two channels whose certificates are for another name fail whatever
# the file, so they show when the worker has reloaded: their error changes.
sql(qq(
SELECT herald.create_channel(name => 'bus_watch', kind => 'nats',
                             target => 'tls://127.0.0.1:$servers{other}{port}/private.x',
                             timeout => '2 seconds', retry_delay => '100 milliseconds',
                             max_attempts => 100);
SELECT herald.create_channel(name => 'hook_watch', kind => 'webhook',
                             target => '$https_other->{url}/hook',
                             timeout => '2 seconds', retry_delay => '100 milliseconds',
                             max_attempts => 100);
));
set_ca_file("$dir/missing.pem");
sql(q(
SELECT herald.test_channel(name) FROM herald.channel_defs
 WHERE name IN ('bus', 'hook', 'bus_watch', 'hook_watch');
));
ok( wait_for(
		"SELECT count(*) = 2 FROM herald.deliveries WHERE channel LIKE '%_watch' AND status = 'pending' AND attempts >= 2 AND last_error LIKE '%missing.pem%'"
	),
	'with a missing herald.ca_file, each attempt fails');
like(outcome('bus_watch'),
	qr/^pending \d+ could not open herald\.ca_file "\Q$dir\E\/missing\.pem": No such file or directory$/,
	'the NATS error names the file and why');
like(outcome('hook_watch'),
	qr/^pending \d+ could not load the CA certificates of herald\.ca_file: error (?:setting certificate file|adding trust anchors from file): \Q$dir\E\/missing\.pem$/,
	'the HTTPS error names the file');

set_ca_file("$dir/good.key");
ok( wait_for(
		"SELECT count(*) = 2 FROM herald.deliveries WHERE channel LIKE '%_watch' AND status = 'pending' AND last_error LIKE '%good.key%'"
	),
	'with a herald.ca_file that holds no certificate, each attempt fails');
like(outcome('bus_watch'),
	qr/^pending \d+ could not load the CA certificates of herald\.ca_file: SSL Error \(Error loading trusted certificates '\Q$dir\E\/good\.key': no certificate or crl found\)$/,
	'the NATS error says the file holds no certificate');
like(outcome('hook_watch'),
	qr/^pending \d+ could not load the CA certificates of herald\.ca_file: error (?:setting certificate file|adding trust anchors from file): \Q$dir\E\/good\.key$/,
	'the HTTPS error names the file');

# set right again: the retries of bus and hook go through
set_ca_file($ca);
ok( wait_for(
		"SELECT count(*) = 4 FROM herald.deliveries WHERE channel IN ('bus', 'hook') AND status = 'delivered'"
	),
	'with herald.ca_file right again, the deliveries are delivered');
$ENV{SSL_CERT_FILE} = $ca;
is(`$tool count $good_url PRIVATE 2>&1`, "3\n", 'the stream holds the three messages');
delete $ENV{SSL_CERT_FILE};
ok( wait_for(
		"SELECT last_error LIKE '%IP address mismatch%' FROM herald.deliveries WHERE channel = 'bus_watch'"),
	'a certificate for another name is still refused');

HeraldTest::no_server_errors($node);
note(sprintf('042_tls took %.1f s', time() - $started));
$session->quit;
$node->stop;
done_testing();
