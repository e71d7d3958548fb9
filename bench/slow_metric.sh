#!/usr/bin/env bash
# One slow metric against another owner's rule: how long does the fast rule
# wait?
#
#   bash bench/slow_metric.sh [--sleep 15] [--seconds 45] [--interval 1]
#
# Role fast_owner has a rule due every --interval seconds (metric SELECT 1);
# role slow_owner has a rule due as often whose metric is pg_sleep(--sleep)
# (query_timeout --sleep + 5 s).  For --seconds, the fast rule's evaluations
# are read from herald.evaluation_log: its worst gap between two
# evaluations (its declaration counting as the first), as seconds and as a
# ratio to its interval (1.0 is perfect), and the 99th percentile gap.
# Three variants, each on fresh rules, each started once no evaluation of
# the previous one runs:
#
#   (a) herald.evaluation_slice = 60 s: the slow metric runs in the
#       scheduler to its end, as every metric did before 0.2.0;
#   (b) herald.evaluation_slice = 1 s (the default): the slow metric is
#       cancelled after 1 s and an evaluator evaluates the rule from then on;
#   (c) as (b), with a metric that catches query_canceled and goes on: the
#       scheduler ends itself after slice + 1 s and restarts (5 s), and that
#       owner's rules run in evaluators only.
#
# Documented bound (README, "Slow metrics"): a fast rule of another owner
# waits at most its interval + the slice, (c) at most interval + slice +
# 1 s + the scheduler's 5 s restart, once.  No rule fires (threshold never
# crossed), so nothing is sent.  About 3 minutes with the defaults.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sleep_s=15
seconds=45
interval=1

usage() {
	bench_usage 2,27 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--sleep) sleep_s=$2; shift 2 ;;
		--seconds) seconds=$2; shift 2 ;;
		--interval) interval=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "slow_metric.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$sleep_s" "$seconds" "$interval"

bench_init slow_metric "${args[@]}"
herald_cluster_start "$BENCH_TMP/pg" >&2
bench_wait_worker "pg_herald scheduler" >/dev/null

bench_psql <<'SQL'
CREATE EXTENSION pg_herald;
SELECT herald.create_channel(name => 'nowhere', kind => 'webhook', target => 'http://127.0.0.1:9/');
CREATE ROLE fast_owner IN ROLE herald_author;
CREATE ROLE slow_owner IN ROLE herald_author;
-- a metric that will not be cancelled: it catches query_canceled
CREATE FUNCTION public.stubborn(secs float8) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
BEGIN
    WHILE clock_timestamp() < t + make_interval(secs => secs) LOOP
        BEGIN
            PERFORM pg_sleep(0.1);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
    RETURN 1;
END
$$;
SQL

set_slice() {
	bench_psql -c "ALTER SYSTEM SET herald.evaluation_slice = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
	# the scheduler reads it at its next wake-up; give it one
	sleep 1
}

# wait until no evaluation of the previous variant runs any more
quiesce() {
	local busy
	for _ in $(seq 120); do
		busy=$(bench_psql -c "SELECT count(*) FROM pg_stat_activity
		                       WHERE backend_type IN ('pg_herald scheduler', 'pg_herald evaluator')
		                         AND state = 'active'")
		[ "$busy" = 0 ] && return 0
		sleep 0.5
	done
	bench_die "evaluations still running after 60 s"
}

# run_variant LABEL METRIC: the fast rule's numbers while METRIC is slow_owner's
run_variant() {
	local label=$1 metric=$2 since
	quiesce
	bench_say "$label: $seconds s"
	since=$(bench_psql -c "SELECT extract(epoch FROM clock_timestamp())")
	bench_psql -v metric="$metric" -v every="$interval seconds" \
		-v qt="$((sleep_s + 5)) seconds" >/dev/null <<'SQL'
-- the slow rule first: evaluated first, it makes the fast one wait
SET ROLE slow_owner;
SELECT herald.on_threshold('slow', :'metric', '>', 10, ARRAY['nowhere'],
                           every => :'every', query_timeout => :'qt');
SET ROLE fast_owner;
SELECT herald.on_threshold('fast', 'SELECT 1', '>', 10, ARRAY['nowhere'], every => :'every');
SQL
	sleep "$seconds"
	bench_psql -v since="$since" -v label="$label" -v interval="$interval" <<'SQL'
-- from the declaration on: the wait for the first evaluation counts too
WITH fast AS (
    SELECT extract(epoch FROM t.at - lag(t.at) OVER (ORDER BY t.at)) AS gap
      FROM (SELECT l.evaluated_at AS at
              FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
             WHERE r.name = 'fast' AND l.evaluated_at >= to_timestamp(:since)
            UNION ALL
            SELECT to_timestamp(:since)) t),
slow AS (
    SELECT count(*) AS n, round(avg(l.duration_ms)::numeric / 1000, 1) AS secs,
           count(*) FILTER (WHERE l.state_after = 'error') AS errors
      FROM herald.evaluation_log l JOIN herald.rule_defs r ON r.id = l.rule_id
     WHERE r.name = 'slow' AND l.evaluated_at >= to_timestamp(:since))
SELECT :'label', count(*), round(max(gap), 2),
       round(max(gap) / :interval, 2),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY gap)::numeric, 2),
       (SELECT n FROM slow), (SELECT coalesce(secs::text, '-') FROM slow), (SELECT errors FROM slow)
  FROM fast WHERE gap IS NOT NULL;
SQL
	bench_psql -c "SELECT herald.drop_rule('fast'), herald.drop_rule('slow')" >/dev/null
}

rows="variant|fast evaluations|worst gap s|worst gap / interval|p99 gap s|slow evaluations|slow avg s|slow errors"
set_slice 60s
rows+=$'\n'$(run_variant "(a) slice 60 s (as before 0.2.0)" "SELECT 1 FROM pg_sleep($sleep_s)")
set_slice 1s
rows+=$'\n'$(run_variant "(b) slice 1 s (default)" "SELECT 1 FROM pg_sleep($sleep_s)")
rows+=$'\n'$(run_variant "(c) slice 1 s, metric ignores its cancel" "SELECT public.stubborn($sleep_s)")

{
	echo "One slow metric ($sleep_s s) against another owner's rule due every $interval s, $seconds s per variant"
	echo
	bench_table <<<"$rows"
	echo
	echo "scheduler restarts: $(grep -c 'went on past its cancel' "$HERALD_SERVER_LOG" || true)"
	echo "server log errors:  $(bench_server_log_summary | tr '\n' ' ')"
	bench_machine
} | bench_report
