#!/usr/bin/env bash
# Delivery worker memory and drain time with a large backlog.
#
#   bash bench/memory.sh [--backlog 1000000] [--statements 4] [--timeout 900]
#
# One transaction inserts --backlog rows into a watched table in
# --statements INSERT ... SELECT statements; a row rule turns each row into
# a delivery to nginx, so the whole backlog becomes visible to the worker at
# COMMIT.  The script then waits for the drain with short herald.flush()
# calls, at most --timeout seconds (it gives up after that and says so).
# Meanwhile the delivery worker (pg_stat_activity.backend_type =
# 'pg_herald delivery') is sampled every 0.5 s: RSS from ps -o rss=, and its
# split from
# /proc/PID/status into RssAnon (the worker's private memory) and RssShmem
# (PostgreSQL shared buffers the process has touched, shared with every
# backend).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

backlog=1000000
statements=4
drain_timeout=900
fill_timeout=900
interval=0.5

usage() {
	bench_usage 2,4 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--backlog) backlog=$2; shift 2 ;;
		--statements) statements=$2; shift 2 ;;
		--timeout) drain_timeout=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "memory.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$backlog" "$statements" "$drain_timeout"
[ "$statements" -le "$backlog" ] || bench_die "--statements is larger than --backlog"

bench_init memory "${args[@]}"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"
herald_cluster_start "$BENCH_TMP/pg" >&2
worker=$(bench_wait_worker)

bench_psql -v url="$BENCH_NGINX_URL" >/dev/null <<'SQL'
CREATE EXTENSION pg_herald;
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT herald.create_channel(name => 'memory', kind => 'webhook', target => :'url' || '/memory');
SELECT herald.on_change(name => 'memory', on_table => 'orders', channels => ARRAY['memory'],
                        operations => ARRAY['INSERT']);
-- warm-up: one delivery, so the worker has its connection and plans
INSERT INTO orders (customer, amount) VALUES ('customer 1', 1.00);
DO $$BEGIN
    IF NOT herald.flush('30 seconds') THEN
        RAISE EXCEPTION 'the warm-up delivery did not arrive within 30 s';
    END IF;
END$$;
SQL

# Prints "seconds rss_kb anon_kb shmem_kb pid" for the worker, or nothing
# when it is gone.
sample() {
	local pid=$1 rss anon shmem
	rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ') || return 0
	[ -n "$rss" ] || return 0
	anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
	shmem=$(awk '/^RssShmem:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
	echo "$(date +%s.%N) $rss ${anon:-0} ${shmem:-0} $pid"
}
idle=$(sample "$worker")
[ -n "$idle" ] || bench_die "could not read the worker's memory (pid $worker)"

# The fill and the drain, in one session running in the background.
per=$(((backlog + statements - 1) / statements))
{
	echo "SELECT extract(epoch FROM clock_timestamp()) AS t_begin \\gset"
	echo "BEGIN;"
	for i in $(seq 0 $((statements - 1))); do
		from=$((i * per + 1))
		to=$(((i + 1) * per < backlog ? (i + 1) * per : backlog))
		[ "$from" -le "$to" ] || continue
		echo "INSERT INTO orders (customer, amount)"
		echo "SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0 FROM generate_series($from, $to) AS g;"
	done
	echo "SELECT extract(epoch FROM clock_timestamp()) AS t_commit \\gset"
	echo "COMMIT;"
	echo "SELECT :t_begin, :t_commit;"
} >"$BENCH_TMP/fill.sql"

bench_say "inserting $backlog rows in $statements statements, one transaction"
bench_bg "$fill_timeout" "$BENCH_PGBIN/psql" -X -q -At -F ' ' -v ON_ERROR_STOP=1 -f "$BENCH_TMP/fill.sql" \
	-o "$BENCH_TMP/fill.out"
session=$BENCH_BG_PID

# Sample the worker every $interval s: while the fill runs, with sleep;
# during the drain, a herald.flush('$interval seconds') call is the pause
# (short calls: see bench_drain in lib.sh), until one returns true.
samples=$BENCH_TMP/samples.txt
restarts=0
started=$(date +%s)
t_commit=
flushed=f
n=0
max_samples=$(((fill_timeout + drain_timeout) * 2 + 100))
while [ "$n" -lt "$max_samples" ]; do
	line=$(sample "$worker")
	if [ -z "$line" ]; then
		# the worker is gone: note it and follow its successor
		restarts=$((restarts + 1))
		bench_say "WARNING: delivery worker $worker is gone"
		worker=$(bench_wait_worker)
		continue
	fi
	echo "$line" >>"$samples"
	n=$((n + 1))
	if [ -z "$t_commit" ]; then
		if kill -0 "$session" 2>/dev/null; then
			sleep "$interval"
			continue
		fi
		rc=0
		wait "$session" || rc=$?
		[ "$rc" -eq 0 ] || bench_die "the fill session failed (exit $rc): $(cat "$BENCH_TMP/fill.out" 2>/dev/null)"
		read -r t_begin t_commit <"$BENCH_TMP/fill.out"
		drain_deadline=$(($(date +%s) + drain_timeout))
		bench_say "committed; draining (at most $drain_timeout s)"
	fi
	read -r flushed t_done < <(bench_psql -F ' ' -c \
		"SELECT herald.flush('$interval seconds'), extract(epoch FROM clock_timestamp())")
	[ "$flushed" = t ] && break
	[ "$(date +%s)" -lt "$drain_deadline" ] || break
	if [ $((n % 20)) -eq 0 ]; then
		pending=$(bench_psql -c "SELECT count(*) FROM herald.deliveries WHERE status = 'pending'")
		read -r _ rss anon _ _ <<<"$line"
		bench_say "$(($(date +%s) - started)) s: worker RSS $((rss / 1024)) MB (private $((anon / 1024)) MB), pending deliveries $pending"
	fi
done
[ -n "$t_commit" ] || bench_die "the fill did not finish within $fill_timeout s"

after=$(sample "$worker")
counts=$(bench_psql -F ' ' -c "SELECT count(*) FILTER (WHERE status = 'delivered'),
	count(*) FILTER (WHERE status = 'dead'), count(*) FILTER (WHERE status = 'pending'),
	(SELECT count(*) FROM herald.attempts)
	FROM herald.deliveries WHERE channel = 'memory'")
read -r delivered dead pending attempts <<<"$counts"
# the warm-up delivery is not part of the backlog
delivered=$((delivered - 1))
attempts=$((attempts - 1))

# Peaks over the samples taken after COMMIT (the drain).
read -r peak_rss peak_anon peak_shmem drain_samples < <(awk -v c="$t_commit" '
	$1 >= c { n++; if ($2 > r) r = $2; if ($3 > a) a = $3; if ($4 > s) s = $4 }
	END { printf "%d %d %d %d\n", r, a, s, n }' "$samples")
read -r fill_rss fill_anon fill_shmem < <(awk -v c="$t_commit" '
	$1 < c { if ($2 > r) r = $2; if ($3 > a) a = $3; if ($4 > s) s = $4 }
	END { printf "%d %d %d\n", r, a, s }' "$samples")
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
read -r _ idle_rss idle_anon idle_shmem _ <<<"$idle"
read -r _ after_rss after_anon after_shmem _ <<<"${after:-0 0 0 0 0}"

read -r insert_s drain_s rate < <(awk -v b="$t_begin" -v c="$t_commit" -v d="$t_done" -v n="$delivered" \
	'BEGIN { printf "%.1f %.1f %.0f\n", c - b, d - c, n / (d - c) }')
if [ "$flushed" != t ]; then
	drain_s=">$drain_s (gave up)"
fi

rows="backlog|insert s|drain s|deliveries/s|delivered|dead|pending|attempts"
rows+=$'\n'"$backlog|$insert_s|$drain_s|$rate|$delivered|$dead|$pending|$attempts"
mem="delivery worker memory, MB|RSS (ps)|private (RssAnon)|shared buffers touched (RssShmem)"
mem+=$'\n'"idle, before the backlog|$(mb "$idle_rss")|$(mb "$idle_anon")|$(mb "$idle_shmem")"
mem+=$'\n'"peak while inserting (worker idle)|$(mb "$fill_rss")|$(mb "$fill_anon")|$(mb "$fill_shmem")"
mem+=$'\n'"peak while draining ($drain_samples samples)|$(mb "$peak_rss")|$(mb "$peak_anon")|$(mb "$peak_shmem")"
mem+=$'\n'"after the drain|$(mb "$after_rss")|$(mb "$after_anon")|$(mb "$after_shmem")"

{
	echo
	echo "==== memory: one delivery worker draining a backlog of $backlog webhooks to nginx on 127.0.0.1 ===="
	echo
	bench_table <<<"$rows"
	echo
	bench_table <<<"$mem"
	echo
	if [ "$flushed" != t ]; then
		echo "GAVE UP: the backlog was not drained $drain_timeout s after COMMIT."
	fi
	[ "$restarts" -eq 0 ] || echo "WARNING: the delivery worker exited $restarts time(s) during the run."
	echo "insert s: BEGIN -> COMMIT issued, $statements INSERT ... SELECT statements in one transaction."
	echo "drain s:  COMMIT issued -> the herald.flush('$interval seconds') call (one per sample) that returned"
	echo "          true; deliveries/s = delivered / drain s."
	echo "memory:   sampled every ${interval} s; peaks are the largest sample (they need not coincide)."
	echo "          RSS counts the shared buffers the worker has touched (RssShmem), which are"
	echo "          PostgreSQL's shared memory (shared_buffers = 128MB), not the worker's own;"
	echo "          RssAnon is the worker's private memory."
	echo "cluster:  scripts/cluster.sh defaults (fsync = off, shared_buffers = 128MB), one delivery worker,"
	echo "          herald.batch_size / max_in_flight / max_host_connections at their defaults."
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
[ "$flushed" = t ] || exit 1
