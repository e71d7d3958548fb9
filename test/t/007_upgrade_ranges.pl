# Parameter ranges across the upgrade: values 0.1.0 stored outside the
# ranges of this version (a channel timeout of 300000 years, which broke the
# claim of every channel) are brought to the nearest bound by ALTER
# EXTENSION pg_herald UPDATE, with a warning naming each one; far timers set
# from them come within the ranges too; and the updated installation
# delivers on every channel, the clamped one included.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HeraldTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = HeraldTest::new_node('main', '');
my $receiver = HeraldTest::start_receiver($node);
my $url = $receiver->{url};

$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_herald VERSION '0.1.0';
CREATE TABLE orders (id int PRIMARY KEY);
INSERT INTO herald.channel_defs (name, kind, target, secret, max_attempts, retry_delay, timeout,
                                 max_concurrency, rate_limit, created_by)
VALUES ('huge', 'webhook', '$url/huge', herald.generate_secret(), 100000, '75 years',
        '300000 years', 5000, 0.00001, current_user),
       ('fine', 'webhook', '$url/fine', herald.generate_secret(), 8, '1 second', '15 seconds',
        32, NULL, current_user),
       (E'spoof\nWARNING:  channel "fine": all is well', 'webhook', '$url/spoof',
        herald.generate_secret(), 8, '1 second', '1 hour', 32, NULL, current_user);
-- disabled: the point is its stored values, not its evaluations
INSERT INTO herald.rule_defs (name, kind, owner, enabled, metric, grouped, op, threshold, every, pending_for,
                              repeat_every, min_interval, query_timeout, followup_after,
                              followup_every, meeting)
VALUES ('far', 'threshold', current_user::regrole, false, 'SELECT 1', false, '>', 1, '300000 years',
        '100 years', '0.001 seconds', '2 days', '0.001 milliseconds', '1000000 years', '50 years',
        '1 minute');
INSERT INTO herald.rule_instances (rule_id, key, state, since, pending_since, next_check_at)
SELECT id, '', 'pending', now(), now(), now() + interval '100 years' FROM herald.rule_defs;
INSERT INTO herald.event_log (type, payload) VALUES ('channel.test', '{}');
INSERT INTO herald.delivery_queue (event_id, channel_id, next_attempt_at)
SELECT (SELECT max(id) FROM herald.event_log), id, now() + interval '70 years'
  FROM herald.channel_defs WHERE name = 'fine';
));

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'ALTER EXTENSION pg_herald UPDATE');
is($ret, 0, 'the update succeeds');
my @warnings = ($stderr =~ /WARNING:  (.*)$/mg);
is(scalar(@warnings), 14, "one warning per value brought within its range") or diag(join "\n", @warnings);
like($stderr, qr/: WARNING:  channel "spoof\\nWARNING:  channel \\"fine\\": all is well": timeout was outside/m,
	'a name 0.1.0 accepted with a newline is quoted on one line');
like($stderr, qr/WARNING:  channel "huge": timeout was outside its range \(100 milliseconds to 10 minutes\), set to the nearest bound$/m,
	'the warning names the channel, the setting and the range');
like($stderr, qr/WARNING:  rule "far": every was outside its range \(1 second to 366 days\), set to the nearest bound$/m,
	'the warning names the rule, the setting and the range');
unlike($stderr, qr/"fine"/, 'a channel within the ranges is left alone');

is($node->safe_psql('postgres', q(
SELECT concat_ws(' ', max_attempts, retry_delay, timeout, max_concurrency, rate_limit)
  FROM herald.channel_defs WHERE name = 'huge')),
	'100 1 day 00:10:00 1000 0.001', 'the channel is at the nearest bounds');
is($node->safe_psql('postgres', q(
SELECT concat_ws(' ', max_attempts, retry_delay, timeout, max_concurrency, coalesce(rate_limit::text, 'none'))
  FROM herald.channel_defs WHERE name = 'fine')),
	'8 00:00:01 00:00:15 32 none', 'the channel within the ranges keeps its settings');
is($node->safe_psql('postgres', q(
SELECT concat_ws(' ', every, pending_for, repeat_every, min_interval, query_timeout,
                 followup_after, followup_every, meeting)
  FROM herald.rule_defs WHERE name = 'far')),
	'366 days 30 days 00:00:01 1 day 00:00:00.01 30 days 30 days 00:05:00',
	'the rule is at the nearest bounds');
is($node->safe_psql('postgres', q(
SELECT (SELECT coalesce(next_check_at, now()) <= now() + interval '30 days' FROM herald.rule_instances)
   AND (SELECT next_attempt_at <= now() + interval '1 day' FROM herald.delivery_queue))),
	't', 'the timers set from such values come within the ranges');

# The checks of the tables are the ranges now.
($ret, $stdout, $stderr) = $node->psql('postgres', q(
DO $$
BEGIN
    UPDATE herald.channel_defs SET timeout = '300000 years' WHERE name = 'fine';
    RAISE NOTICE 'accepted';
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END;
$$));
like($stderr, qr/refused: .*violates check constraint "channel_defs_timeout_check"/,
	'the table refuses a timeout outside its range');

# Both channels deliver; the one that was out of range does not stop the other.
$node->safe_psql('postgres', q(
SELECT herald.redeliver(id) FROM herald.delivery_queue;
SELECT herald.on_change('order', 'orders', ARRAY['huge', 'fine'], ARRAY['INSERT']);
INSERT INTO orders VALUES (1);
));
is($node->safe_psql('postgres', q(SELECT herald.flush('60 seconds'))), 't',
	'the updated installation delivers');
is(scalar(@{ HeraldTest::received($receiver, '/huge') }), 1, 'the clamped channel got its event');
is(scalar(@{ HeraldTest::received($receiver, '/fine') }), 2, 'the other channel got both');

HeraldTest::stop_receiver($receiver);
HeraldTest::no_server_errors($node);
done_testing();
