#!/usr/bin/env bash
# The delivery worker's CPU time per delivery, not deliveries per second: a
# fixed workload (one worker draining N webhooks to a local nginx) whose CPU
# seconds, read from /proc, depend much less on what else a shared machine
# runs than its wall-clock rate does.  For before/after comparisons of the
# delivery code; bench/throughput.sh gives the rate and the wrk ceiling.
#
#   bash bench/delivery_cpu.sh [--events 50000] [--rounds 3] [--profile]
#                              [--concurrency 32]
#
# Each round: one transaction inserts --events orders (a row rule sends
# every one to nginx), then the worker drains them (herald.flush).  Reported:
# the worker's user + system CPU seconds per round, in microseconds per
# delivery, and its wake-ups (voluntary context switches) per delivery;
# the median over the rounds.  --concurrency: the channel's max_concurrency
# (default 32, the default of every channel).  --profile also records the worker with
# `perf record -g` (cpu-clock) during the last round and prints the top of
# `perf report` (the machine has no hardware counters: no instruction
# counts); BENCH_PERF_DATA=FILE keeps that profile in FILE for `perf report`
# or `perf script` afterwards.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

events=50000
rounds=3
profile=0
concurrency=32
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--events) events=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--profile) profile=1; shift ;;
		--concurrency) concurrency=$2; shift 2 ;;
		-h | --help) bench_usage 2,17 0 ;;
		*) echo "delivery_cpu.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done
bench_positive_ints "$events" "$rounds" "$concurrency"
bench_init delivery_cpu "${args[@]}"
bench_nginx_start
herald_cluster_start "$BENCH_TMP/pg" "herald.delivery_workers = 1" >&2
pid=$(bench_wait_worker)
bench_psql -v url="$BENCH_NGINX_URL" -v concurrency="$concurrency" >/dev/null <<'SQL'
CREATE EXTENSION pg_herald;
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT herald.create_channel(name => 'bench', kind => 'webhook', target => :'url' || '/bench',
                             max_concurrency => :concurrency);
SELECT herald.on_change(name => 'bench', on_table => 'orders', channels => ARRAY['bench'],
                        operations => ARRAY['INSERT']);
INSERT INTO orders (customer, amount) VALUES ('warm-up', 1);
SELECT herald.flush('30 seconds');
SQL
pid=$(bench_worker_pid)
[ -n "$pid" ] || bench_die "no delivery worker"

rows="round|deliveries|worker CPU s|us per delivery|wake-ups per delivery|deliveries per transaction|drain s"
us_list=()
for r in $(seq "$rounds"); do
	read -r cpu0 waits0 < <(bench_proc_usage "$pid")
	x0=$(bench_psql -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
	bench_psql -v n="$events" >/dev/null <<'SQL'
INSERT INTO orders (customer, amount)
SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0 FROM generate_series(1, :n) AS g;
SQL
	t0=$(date +%s.%N)
	perf_pid=
	if [ "$profile" = 1 ] && [ "$r" = "$rounds" ]; then
		perf record ${BENCH_PERF_ARGS:--g} -o "${BENCH_PERF_DATA:-$BENCH_TMP/perf.data}" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	read -r flushed _ < <(bench_drain 600)
	t1=$(date +%s.%N)
	[ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
	read -r cpu1 waits1 < <(bench_proc_usage "$pid")
	sleep 0.6 # the statistics are flushed every 500 ms at most
	x1=$(bench_psql -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
	[ "$flushed" = t ] || bench_die "round $r did not drain"
	read -r us wk cs ds xs < <(awk -v a="$cpu0" -v b="$cpu1" -v w0="$waits0" -v w1="$waits1" \
		-v n="$events" -v t0="$t0" -v t1="$t1" -v x0="$x0" -v x1="$x1" \
		'BEGIN { printf "%.1f %.3f %.2f %.2f %.1f\n", (b - a) * 1e6 / n, (w1 - w0) / n, b - a, t1 - t0, n / (x1 - x0) }')
	us_list+=("$us")
	rows+=$'\n'"$r|$events|$cs|$us|$wk|$xs|$ds"
	bench_say "round $r: $us us per delivery"
done
median=$(printf '%s\n' "${us_list[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
{
	echo
	echo "==== delivery worker CPU per delivery: $events webhooks to nginx, $rounds rounds ===="
	echo
	bench_table <<<"$rows"
	echo
	echo "median: $median us of worker CPU per delivery"
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
if [ "$profile" = 1 ]; then
	perf report -i "${BENCH_PERF_DATA:-$BENCH_TMP/perf.data}" --no-children --percent-limit 0.7 --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
	perf report -i "${BENCH_PERF_DATA:-$BENCH_TMP/perf.data}" --children --percent-limit 3 --stdio -g none --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
fi
