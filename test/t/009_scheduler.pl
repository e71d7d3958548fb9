# The scheduler: a slow metric does not starve another owner's rule beyond
# the documented bound, a metric that fights its cancel costs one restart,
# and DROP EXTENSION pg_herald CASCADE while the workers are busy succeeds,
# after which they leave the dropped installation alone.
#
# 1. bob's rule is due every second; alice's metric sleeps 4 s, due every
#    second as well.  bob's evaluations must never be further apart than
#    his interval + herald.evaluation_slice (1 s) + 1 s of slack; alice's
#    rule goes on being evaluated (by evaluators).
# 2. carol's metric catches query_canceled and goes on: the scheduler ends
#    itself once (and restarts), her rule ends in state error, bob's gap
#    stays within interval + slice + 1 s grace + the 5 s restart + slack,
#    and the scheduler does not restart again for her.
# 3. Four times: with rules evaluating (one of them in an evaluator, in the
#    middle of a 30 s metric), a silenced rule's follow-up due, deliveries
#    flowing and a writer committing, DROP EXTENSION pg_herald CASCADE
#    succeeds within a few seconds.  Then every worker says once that the
#    installation is gone, shows no stale step in pg_stat_activity, and
#    no worker logs an error.  At the end a new installation is served.

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

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $slice_s = 1;
my $grace_s = 1;
my $restart_s = 5;    # bgw_restart_time of the scheduler
my $slack_s = 1;

# %b: the workers' lines name them
my $node = HeraldTest::new_node('main',
	"herald.evaluation_slice = '${slice_s}s'\nherald.max_evaluators = 2\n"
	  . "log_line_prefix = '%m [%p] %b %q%a '\n");
my $receiver = HeraldTest::start_receiver($node);
my $url = $receiver->{url};

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
SELECT herald.create_channel(name => 'hook', kind => 'webhook', target => '$url/hook');
CREATE ROLE alice IN ROLE herald_author;
CREATE ROLE bob IN ROLE herald_author;
CREATE ROLE carol IN ROLE herald_author;
-- a metric that will not be cancelled: it catches query_canceled
CREATE FUNCTION public.stubborn() RETURNS int LANGUAGE plpgsql AS \$\$
DECLARE
    t timestamptz := clock_timestamp();
BEGIN
    WHILE clock_timestamp() < t + interval '60 s' LOOP
        BEGIN
            PERFORM pg_sleep(0.2);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
    RETURN 1;
END
\$\$;
));

# The longest time between two evaluations of rule $name that ends after
# $since (an epoch), in seconds, and how many evaluations there were since.
sub worst_gap
{
	my ($name, $since) = @_;
	return split /\|/, $node->safe_psql('postgres', qq(
SELECT coalesce(max(gap), 0), count(*)
  FROM (SELECT l.evaluated_at,
               extract(epoch FROM l.evaluated_at
                       - lag(l.evaluated_at) OVER (ORDER BY l.evaluated_at)) AS gap
          FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
         WHERE r.name = '$name') g
 WHERE g.evaluated_at >= to_timestamp($since)));
}

sub now_epoch
{
	return $node->safe_psql('postgres', 'SELECT extract(epoch FROM clock_timestamp())');
}

# --- 1. a slow metric ---------------------------------------------------------

my $since = now_epoch();
# alice's rule first: evaluated first, it makes bob's wait its slice
$node->safe_psql('postgres', q(
SET ROLE alice;
SELECT herald.on_threshold('slow', 'SELECT 1 FROM pg_sleep(4)', '>', 10, ARRAY['hook'],
                           every => '1 second', query_timeout => '10 seconds');
SET ROLE bob;
SELECT herald.on_threshold('fast', 'SELECT 1', '>', 10, ARRAY['hook'], every => '1 second');
));
ok( $node->poll_query_until('postgres', q(
SELECT count(*) >= 3 FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
 WHERE r.name = 'slow' AND l.error IS NULL)),
	'the slow rule is evaluated again and again, without error');
my ($gap, $n) = worst_gap('fast', $since);
note("fast rule: $n evaluations, worst gap $gap s while a 4 s metric ran");
cmp_ok($n, '>=', 8, 'the fast rule is evaluated all along');
cmp_ok($gap, '<=', 1 + $slice_s + $slack_s,
	"the fast rule waits at most its interval + herald.evaluation_slice");
is( scalar(HeraldTest::server_log($node, 0,
		qr/threshold rule \d+ took longer than herald.evaluation_slice/)),
	1, 'the slow rule is handed to the evaluators once');
is( $node->safe_psql('postgres', q(
SELECT max(duration_ms) >= 4000 FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
 WHERE r.name = 'slow')),
	't', 'the evaluators run the slow metric to its end');

# --- 2. a metric that fights its cancel -----------------------------------------

$since = now_epoch();
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q(
SET ROLE carol;
SELECT herald.on_threshold('stubborn', 'SELECT public.stubborn()', '>', 10, ARRAY['hook'],
                           every => '1 second', query_timeout => '2 seconds');
));
ok( $node->poll_query_until('postgres', q(
SELECT count(*) >= 2 FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
 WHERE r.name = 'stubborn' AND l.state_after = 'error')),
	'the stubborn rule ends in state error, twice');
is( $node->safe_psql('postgres', q(SELECT error FROM herald.rules WHERE name = 'stubborn')),
	'the evaluation ran past its time limit (query_timeout + 2000 ms) and was stopped',
	'its error says it was stopped');
is( $node->safe_psql('postgres',
		q(SELECT count(*) FROM herald.events WHERE rule = 'stubborn' AND type = 'rule.error')),
	'1', 'one rule.error event');
is( scalar(HeraldTest::server_log($node, $log_offset,
		qr/went on past its cancel: the pg_herald scheduler restarts/)),
	1, 'the scheduler restarted once, and not again for the same owner');
($gap, $n) = worst_gap('fast', $since);
note("fast rule: $n evaluations, worst gap $gap s around the stubborn metric");
cmp_ok($gap, '<=', 1 + $slice_s + $grace_s + $restart_s + $slack_s,
	'the fast rule waits at most interval + slice + grace + a restart');
($gap, $n) = worst_gap('slow', $since);
cmp_ok($n, '>=', 1, 'the slow rule is still evaluated');
$node->safe_psql('postgres', q(
SELECT herald.drop_rule('stubborn'), herald.drop_rule('slow'), herald.drop_rule('fast');
));

# --- 3. DROP EXTENSION while the workers are busy -------------------------------

# a writer committing one row at a time for the whole section
$node->safe_psql('postgres', 'CREATE TABLE load (id bigserial, v int)');
my ($out, $err) = ('', '');
my $psql = $node->config_data('--bindir') . '/psql';
my $writer = IPC::Run::start(
	[
		$psql, '-X', '-q', '-d', $node->connstr('postgres'), '-c', q(
DO $$
DECLARE
    t timestamptz := clock_timestamp();
BEGIN
    WHILE clock_timestamp() < t + interval '120 s'
          AND NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'load_stop') LOOP
        BEGIN
            INSERT INTO load (v) VALUES (1);
        EXCEPTION WHEN OTHERS THEN
            NULL;       -- a deadlock with DROP EXTENSION, say: go on
        END;
        COMMIT;
    END LOOP;
END
$$)
	],
	'>', \$out, '2>', \$err);

$node->safe_psql('postgres', 'DROP EXTENSION pg_herald CASCADE');
my $cycles = 4;
my $drops_ok = 0;
my $slowest_drop = 0;
$log_offset = -s $node->logfile;
for my $cycle (1 .. $cycles)
{
	$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald;
SELECT herald.create_channel(name => 'hook', kind => 'webhook', target => '$url/hook?delay_ms=5');
SELECT herald.on_threshold('watch-' || g, 'SELECT count(*) FROM public.load', '>', 0, ARRAY['hook'],
                           watch => ARRAY['load'::regclass], followup_after => '1 second')
  FROM generate_series(1, 5) g;
SELECT herald.on_threshold('long', 'SELECT 1 FROM pg_sleep(30)', '>', 10, ARRAY['hook'],
                           every => '1 second', query_timeout => '1 minute');
SELECT herald.on_change('rows', 'load', ARRAY['hook']);
));
	$node->poll_query_until('postgres', q(
SELECT count(*) > 0 FROM herald.events WHERE rule = 'watch-1' AND type = 'rule.fired'))
	  or diag("cycle $cycle: watch-1 did not fire");
	$node->safe_psql('postgres',
		q(SELECT herald.silence('watch-1', now() + interval '1 hour', 'quiet, please')));
	ok( $node->poll_query_until('postgres', q(
SELECT (SELECT count(*) > 0 FROM pg_stat_activity
         WHERE backend_type = 'pg_herald evaluator' AND query LIKE 'pg_herald: evaluating%')
   AND (SELECT count(*) > 0 FROM herald.deliveries WHERE status = 'delivered')
   AND (SELECT count(*) > 0 FROM herald.event_log e JOIN herald.rule_defs r ON r.id = e.rule_id
         WHERE r.name = 'watch-1' AND e.created_at < now() - interval '1 second'))),
		"cycle $cycle: an evaluator is busy, deliveries flow, a silenced follow-up is due");
	my $t0 = time();
	my ($rc, $stdout, $stderr) =
	  $node->psql('postgres', 'DROP EXTENSION pg_herald CASCADE', timeout => $timeout);
	my $took = time() - $t0;
	$slowest_drop = $took if $took > $slowest_drop;
	if ($rc == 0)
	{
		$drops_ok++;
	}
	else
	{
		diag("cycle $cycle: DROP EXTENSION failed: $stderr");
	}
}
is($drops_ok, $cycles, "DROP EXTENSION CASCADE succeeded $cycles times out of $cycles");
note(sprintf('slowest DROP EXTENSION: %.2f s', $slowest_drop));
cmp_ok($slowest_drop, '<', 5, 'no DROP waits for the 30 s metric in progress');

ok( $node->poll_query_until('postgres', q(
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_herald%' AND (query <> '' OR backend_type = 'pg_herald evaluator'))),
	'after the drop, the workers show no stale step and no evaluator runs');
foreach my $worker ('pg_herald scheduler', 'pg_herald delivery worker 0')
{
	is( scalar(HeraldTest::server_log($node, $log_offset,
			qr/pg_herald was dropped from database "postgres": \Q$worker\E leaves it alone/)),
		$cycles, "$worker says once per drop that the installation is gone");
}
my @worker_errors = HeraldTest::server_log($node, $log_offset,
	qr/\] pg_herald (?:scheduler|delivery|evaluator) (?:ERROR|FATAL):/);
is(scalar(@worker_errors), 0, 'no worker logs an error: no deadlock, no stale statement')
  or diag(join "\n", @worker_errors[0 .. ($#worker_errors < 9 ? $#worker_errors : 9)]);

$node->safe_psql('postgres', 'CREATE TABLE load_stop ()');
$writer->finish;

# a new installation is served
$node->safe_psql('postgres', q(
CREATE EXTENSION pg_herald;
SELECT herald.create_channel(name => 'hook', kind => 'webhook', target => 'http://127.0.0.1:1/');
SELECT herald.on_threshold('again', 'SELECT 1', '>', 10, ARRAY['hook'], every => '1 hour');
));
is($node->safe_psql('postgres', q(SELECT herald.flush('30 seconds'))), 't',
	'a new installation is served');
is($node->safe_psql('postgres', q(SELECT state FROM herald.rules WHERE name = 'again')),
	'ok', 'its rule is evaluated');

HeraldTest::stop_receiver($receiver);
$node->stop;
done_testing();
