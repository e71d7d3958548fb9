#!/usr/bin/env bash
# Delivery throughput: how fast pg_herald drains a queue of N webhooks to a
# local nginx, next to what wrk gets from the same nginx.
#
#   bash bench/throughput.sh [--events 100000] [--workers 1,2]
#                            [--wrk-seconds 10] [--connections 64] [--timeout 600]
#
# For each delivery worker count (a fresh cluster with
# herald.delivery_workers = W):
#   1. a row rule on table "orders" sends every inserted row to nginx;
#   2. one transaction inserts N orders with one INSERT ... SELECT, so the
#      N deliveries become visible to the workers at once, at COMMIT;
#   3. herald.flush() waits until all of them are delivered or dead.
# Drain time = from COMMIT (the clock read just before it) to the
# herald.flush('1 second') call that saw the queue done (flush polls every
# 50 ms at most; see bench_drain in lib.sh for why short calls).  deliveries/s = delivered / drain.
# Then wrk -t1 -cC POSTs requests of the same size with the same headers to
# the same nginx for --wrk-seconds: that is the HTTP ceiling of the machine.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

events=100000
workers=1,2
wrk_seconds=10
connections=64
drain_timeout=600

usage() {
	bench_usage 2,6 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--events) events=$2; shift 2 ;;
		--workers) workers=$2; shift 2 ;;
		--wrk-seconds) wrk_seconds=$2; shift 2 ;;
		--connections) connections=$2; shift 2 ;;
		--timeout) drain_timeout=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "throughput.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$events" "$wrk_seconds" "$connections" "$drain_timeout"
[[ $workers =~ ^[1-9][0-9]?(,[1-9][0-9]?)*$ ]] || bench_die "--workers wants a list like 1,2"

bench_init throughput "${args[@]}"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"

rows="sender|deliveries|insert s|first sent after COMMIT s|drain s|deliveries/s|share of wrk ceiling"
details=
logs=
body_bytes=
results=()

IFS=, read -r -a worker_counts <<<"$workers"
for w in "${worker_counts[@]}"; do
	herald_cluster_stop
	bench_say "starting a cluster with herald.delivery_workers = $w"
	herald_cluster_start "$BENCH_TMP/pg_w$w" "herald.delivery_workers = $w" >&2
	bench_wait_worker >/dev/null

	bench_psql -v url="$BENCH_NGINX_URL" >/dev/null <<'SQL'
CREATE EXTENSION pg_herald;
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- warm-up and probe: one order through a logged location, to learn the
-- size of the requests pg_herald sends (wrk sends the same size)
SELECT herald.create_channel(name => 'probe', kind => 'webhook', target => :'url' || '/log/probe');
SELECT herald.on_change(name => 'probe', on_table => 'orders', channels => ARRAY['probe'],
                        operations => ARRAY['INSERT']);
INSERT INTO orders (customer, amount) VALUES ('customer 1', 123.45);
DO $$BEGIN
    IF NOT herald.flush('30 seconds') THEN
        RAISE EXCEPTION 'the probe delivery did not arrive within 30 s';
    END IF;
END$$;
SELECT herald.drop_rule('probe');
SELECT herald.drop_channel('probe');
SELECT herald.create_channel(name => 'bench', kind => 'webhook', target => :'url' || '/bench');
SELECT herald.on_change(name => 'bench', on_table => 'orders', channels => ARRAY['bench'],
                        operations => ARRAY['INSERT']);
SQL
	if [ -z "$body_bytes" ]; then
		body_bytes=$(awk '$2 ~ /^msg_/ { print $3; exit }' "$BENCH_NGINX_LOG")
		[[ $body_bytes =~ ^[0-9]+$ ]] || bench_die "the probe webhook did not reach nginx"
	fi

	bench_say "$w worker(s): inserting $events orders in one transaction, then draining"
	# Every time below comes from the server's clock.
	read -r t_begin t_commit < <(BENCH_SQL_TIMEOUT=900 bench_psql -F ' ' -v n="$events" <<'SQL'
SELECT extract(epoch FROM clock_timestamp()) AS t_begin \gset
BEGIN;
INSERT INTO orders (customer, amount)
SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0 FROM generate_series(1, :n) AS g;
SELECT extract(epoch FROM clock_timestamp()) AS t_commit \gset
COMMIT;
SELECT :t_begin, :t_commit;
SQL
	)
	read -r flushed t_done < <(bench_drain "$drain_timeout")
	out=$(bench_psql -F ' ' -v t_commit="$t_commit" <<'SQL'
SELECT count(*) FILTER (WHERE d.status = 'delivered'),
       count(*) FILTER (WHERE d.status = 'dead'),
       count(*) FILTER (WHERE d.status = 'pending'),
       sum(d.attempts),
       extract(epoch FROM max(d.finished_at)) - :t_commit
  FROM herald.deliveries d WHERE d.channel = 'bench';
SELECT extract(epoch FROM min(a.started_at)) - :t_commit
  FROM herald.attempts a JOIN herald.deliveries d ON d.id = a.delivery_id
 WHERE d.channel = 'bench';
SQL
	)
	read -r delivered dead pending attempts last_finished < <(head -n 1 <<<"$out")
	first_sent=$(sed -n 2p <<<"$out")
	[ "$flushed" = t ] || bench_say "WARNING: gave up after $drain_timeout s ($pending still pending)"

	read -r insert_s drain_s rate first_s last_s < <(awk -v b="$t_begin" -v c="$t_commit" \
		-v d="$t_done" -v n="$delivered" -v f="$first_sent" -v l="$last_finished" \
		'BEGIN { printf "%.2f %.2f %.0f %.3f %.2f\n", c - b, d - c, n / (d - c), f, l }')
	[ "$flushed" = t ] || drain_s=">$drain_s (gave up)"
	label="pg_herald, $w delivery worker"
	[ "$w" -eq 1 ] || label+=s
	results+=("$label|$delivered|$insert_s|$first_s|$drain_s|$rate")
	details+="$label|$delivered|$dead|$pending|$attempts|$last_s"$'\n'
	logs+="  $w worker(s): $(bench_server_log_summary)"$'\n'
	bench_say "$w worker(s): $delivered delivered in $drain_s s = $rate/s"
done

bench_say "wrk -t1 -c$connections -d${wrk_seconds}s, POST bodies of $body_bytes bytes"
read -r wrk_requests wrk_secs wrk_rps < <(bench_wrk "$wrk_seconds" "$connections" "$body_bytes")
wrk_rps=$(printf '%.0f' "$wrk_rps")

for r in "${results[@]}"; do
	rate=${r##*|}
	rows+=$'\n'"$r|$(awk -v a="$rate" -v b="$wrk_rps" 'BEGIN { printf "%.3f", a / b }')"
done
rows+=$'\n'"wrk -t1 -c$connections (HTTP ceiling)|$wrk_requests|-|-|$wrk_secs|$wrk_rps|1.000"

{
	echo
	echo "==== throughput: draining $events queued webhooks to nginx (return 204) on 127.0.0.1 ===="
	echo
	bench_table <<<"$rows"
	echo
	bench_table <<<"sender|delivered|dead|pending|attempts|last finished_at after COMMIT s"$'\n'"${details%$'\n'}"
	echo
	echo "insert s:  one transaction inserting $events rows into the watched table (the row rule"
	echo "           writes $events events + deliveries in it): BEGIN -> COMMIT issued."
	echo "first sent after COMMIT s: earliest herald.attempts.started_at - COMMIT issued."
	echo "drain s:   COMMIT issued -> herald.flush('1 second'), called in a loop, returned true;"
	echo "           deliveries/s = delivered / drain s.  Each request: POST, $body_bytes-byte JSON body,"
	echo "           Standard Webhooks headers and signature, keep-alive."
	echo "wrk:       -t1 -c$connections -d${wrk_seconds}s against the same nginx, POST of $body_bytes bytes"
	echo "           with the same headers, run after pg_herald in the same script."
	echo "cluster:   scripts/cluster.sh defaults (fsync = off, shared_buffers = 128MB),"
	echo "           herald.batch_size / max_in_flight / max_host_connections at their defaults."
	echo "server log ERROR/FATAL/PANIC/WARNING lines:"
	printf '%s' "$logs"
	bench_machine
} | bench_report
