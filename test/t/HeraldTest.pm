# Helpers shared by the pg_herald TAP tests: the test receiver and the logs.
#
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use HeraldTest;
#
#   my $receiver = HeraldTest::start_receiver($node);    # one assertion
#   ... target => "$receiver->{url}/hook?delay_ms=20" ...
#   my $requests = HeraldTest::received($receiver, '/hook');
#   HeraldTest::stop_receiver($receiver);
#
# start_receiver($node [, $host [, tls_cert => FILE, tls_key => FILE]])
#     Starts test/receiver.py on a free port of $host (127.0.0.1 by default,
#     any 127.x.y.z), logging into the node's directory, and asserts that it
#     listens.  Returns a hash with url, port, log, connections (a file with
#     one line per accepted connection) and the process; receivers still
#     running at exit are killed.  With tls_cert and tls_key it speaks
#     HTTPS, and url is https://; several receivers of one host need a
#     name each (name => ...) for their files.
# stop_receiver($receiver)
#     Stops it.  Safe to call twice.
# start_smtp_receiver($node)
#     The same for the SMTP receiver test/smtp_receiver.py (127.0.0.1 only):
#     a hash with url (smtp://127.0.0.1:PORT), port, log and the process;
#     stop it with stop_receiver.
# receiver_lines($receiver)
#     How many requests the receiver has logged so far (complete lines);
#     cheap enough to poll.  Equals the "n" of the last one logged.
# received($receiver, $path)
#     The requests logged for $path, in arrival order: a list of hashes with
#     n (the receiver's sequence number), event_id (data.event_id of the
#     JSON body, undef without one) and webhook_id (the header, '' without).
# diff_lines($got, $expected)
#     The lines only one of two texts has, each marked - (got) or + (expected),
#     for a diagnostic.
# server_log($node, $offset, $regexp)
#     The lines of the server log after byte $offset that match $regexp.
#
# The receiver log is read by a few lines of Python: its JSON lines hold the
# webhook body as a JSON string, and decoding tens of thousands of them with
# the pure-Perl JSON::PP takes seconds that the C json module does not.

package HeraldTest;

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(time sleep);

my $test_dir = $ENV{HERALD_TEST_DIR} // dirname(__FILE__) . '/..';
my $python = $ENV{HERALD_PYTHON} // 'python3';

my @running;

END
{
	foreach my $receiver (@running)
	{
		eval { $receiver->{process}->kill_kill } if $receiver->{process};
	}
}

sub start_receiver
{
	my ($node, $host, %opts) = @_;
	$host //= '127.0.0.1';
	my $timeout = $PostgreSQL::Test::Utils::timeout_default;
	my $basedir = $node->basedir;
	my $name = $opts{name} // $host;
	my $port_file = "$basedir/receiver-$name.port";
	my $log = "$basedir/receiver-$name.log";
	my $connections = "$basedir/receiver-$name.connections";
	my @tls = $opts{tls_cert}
	  ? ('--tls-cert', $opts{tls_cert}, '--tls-key', $opts{tls_key})
	  : ();

	unlink $port_file;
	my $process = IPC::Run::start(
		[
			$python, "$test_dir/receiver.py",
			'--host', $host,
			'--log', $log,
			'--connection-log', $connections,
			'--port', '0',
			'--port-file', $port_file,
			'--max-seconds', 3 * $timeout, @tls
		],
		'<', '/dev/null',
		'>', "$basedir/receiver-$name.out",
		'2>', "$basedir/receiver-$name.out");
	my $receiver = { process => $process, log => $log, connections => $connections };
	push @running, $receiver;

	my $deadline = time() + $timeout;
	while (!-s $port_file && time() < $deadline)
	{
		sleep 0.1;
	}
	ok(-s $port_file, 'test receiver is listening')
	  or BAIL_OUT('the test receiver did not start: '
		  . slurp_file("$basedir/receiver-$name.out"));
	my $port = slurp_file($port_file);
	chomp $port;
	$receiver->{port} = $port;
	$receiver->{url} = (@tls ? 'https' : 'http') . "://$host:$port";
	return $receiver;
}

sub start_smtp_receiver
{
	my ($node) = @_;
	my $timeout = $PostgreSQL::Test::Utils::timeout_default;
	my $basedir = $node->basedir;
	my $port_file = "$basedir/smtp.port";
	my $log = "$basedir/smtp.log";

	unlink $port_file;
	my $process = IPC::Run::start(
		[
			$python, "$test_dir/smtp_receiver.py",
			'--log', $log,
			'--port', '0',
			'--port-file', $port_file,
			'--max-seconds', 3 * $timeout
		],
		'<', '/dev/null',
		'>', "$basedir/smtp.out",
		'2>', "$basedir/smtp.out");
	my $receiver = { process => $process, log => $log };
	push @running, $receiver;

	my $deadline = time() + $timeout;
	while (!-s $port_file && time() < $deadline)
	{
		sleep 0.1;
	}
	ok(-s $port_file, 'test SMTP receiver is listening')
	  or BAIL_OUT('the test SMTP receiver did not start: '
		  . slurp_file("$basedir/smtp.out"));
	my $port = slurp_file($port_file);
	chomp $port;
	$receiver->{port} = $port;
	$receiver->{url} = "smtp://127.0.0.1:$port";
	return $receiver;
}

sub stop_receiver
{
	my ($receiver) = @_;

	if ($receiver->{process})
	{
		$receiver->{process}->kill_kill;
		$receiver->{process} = undef;
	}
	return;
}

# How many requests to this path have arrived at the receiver, answered or
# not (it notes each as it arrives, before any delay it was asked for).
sub receiver_arrivals
{
	my ($receiver, $path) = @_;
	my $n = 0;

	open my $fh, '<', "$receiver->{log}.arrivals" or return 0;
	while (my $line = <$fh>)
	{
		$n++ if index($line, "\"path\": \"$path\"") >= 0;
	}
	close $fh;
	return $n;
}

sub receiver_lines
{
	my ($receiver) = @_;
	my $lines = 0;
	my $buf;

	open my $fh, '<', $receiver->{log} or return 0;
	binmode $fh;
	while (read($fh, $buf, 1 << 20))
	{
		$lines += ($buf =~ tr/\n//);
	}
	close $fh;
	return $lines;
}

# Prints "n <tab> event_id <tab> webhook-id" for each complete line of the
# log (argv[1]) whose path is argv[2].
my $summarize = <<'PYTHON';
import json, sys
with open(sys.argv[1], "rb") as log:
    for line in log:
        if not line.endswith(b"\n"):
            break  # still being written
        request = json.loads(line)
        if request.get("path") != sys.argv[2]:
            continue
        try:
            body = json.loads(request.get("body") or "null")
        except ValueError:
            body = None
        data = body.get("data") if isinstance(body, dict) else None
        event_id = data.get("event_id") if isinstance(data, dict) else None
        print("%d\t%s\t%s" % (request["n"],
                              "" if event_id is None else event_id,
                              request.get("headers", {}).get("webhook-id", "")))
PYTHON

# Percent-encode a form value (UTF-8), as browsers and Slack encode them.
sub form_escape
{
	my ($text) = @_;
	utf8::encode($text) if utf8::is_utf8($text);
	$text =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord($1))/ge;
	return $text;
}

sub received
{
	my ($receiver, $path) = @_;
	my ($out, $err) = ('', '');

	return [] unless -e $receiver->{log};
	IPC::Run::run([ $python, '-c', $summarize, $receiver->{log}, $path ],
		'<', '/dev/null', '>', \$out, '2>', \$err)
	  or die "could not read the receiver log $receiver->{log}: $err";

	my @requests;
	foreach my $line (split /\n/, $out)
	{
		my ($n, $event_id, $webhook_id) = split /\t/, $line, -1;
		push @requests,
		  {
			n => $n,
			event_id => ($event_id eq '' ? undef : $event_id),
			webhook_id => $webhook_id
		  };
	}
	return \@requests;
}

sub server_log
{
	my ($node, $offset, $regexp) = @_;

	return grep { /$regexp/ } split /\n/,
	  slurp_file($node->logfile, $offset);
}

sub diff_lines
{
	my ($got, $expected) = @_;
	my (%in_got, %in_expected);
	$in_got{$_}++ foreach split /\n/, $got;
	$in_expected{$_}++ foreach split /\n/, $expected;
	return join "\n",
	  (map { "- $_" } grep { !$in_expected{$_} } split /\n/, $got),
	  (map { "+ $_" } grep { !$in_got{$_} } split /\n/, $expected);
}

# A node with pg_herald preloaded, its workers serving database postgres,
# plus the given postgresql.conf lines; started.
sub new_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pg_herald'\n"
		  . "herald.database = 'postgres'\n"
		  . ($extra_conf // ''));
	$node->start;
	return $node;
}

# The workers log a failed step and go on: an error must not go unnoticed.
# One assertion: the node's server log holds no ERROR or PANIC line (after
# byte $offset, when given: errors a test provoked on purpose come before).
sub no_server_errors
{
	my ($node, $offset) = @_;
	my @errors = server_log($node, $offset // 0, qr/\b(?:ERROR|PANIC):/);
	is(scalar(@errors), 0, 'the server log shows no error')
	  or diag(join "\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)]);
	return;
}

# The path of program $name on PATH; the whole test is skipped without it.
sub program_or_skip
{
	my ($name) = @_;
	my ($found) = grep { -x $_ } map { "$_/$name" } split /:/, $ENV{PATH};

	Test::More::plan(skip_all => "$name is not installed (scripts/deps.sh installs it)")
	  unless $found;
	return $found;
}

# Wait until every NATS server given ({monitor} => its monitoring port)
# answers /healthz, which says JetStream is ready; false after $timeout s.
sub nats_ready
{
	my ($timeout, @servers) = @_;
	my $deadline = Time::HiRes::time() + $timeout;

	require HTTP::Tiny;
	while (Time::HiRes::time() < $deadline)
	{
		return 1 unless grep {
			!HTTP::Tiny->new(timeout => 1)
			  ->get("http://127.0.0.1:$_->{monitor}/healthz")->{success}
		} @servers;
		Time::HiRes::sleep(0.1);
	}
	return 0;
}

# Build test/nats_tool.c (streams, consumers, operator-mode credentials)
# with this machine's libnats and libcrypto into $dir; its path.
sub build_nats_tool
{
	my ($dir) = @_;
	my $tool = "$dir/nats_tool";
	my $flags = `pkg-config --cflags --libs libnats libcrypto`;

	chomp $flags;
	system("cc -O2 -o $tool $FindBin::RealBin/../nats_tool.c $flags") == 0
	  or Test::More::BAIL_OUT('could not build test/nats_tool.c');
	return $tool;
}

1;
