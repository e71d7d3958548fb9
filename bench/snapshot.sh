#!/usr/bin/env bash
# Delivery while another session holds a snapshot: drain N queued webhooks
# to nginx, alternately with no long snapshot anywhere and while one session
# keeps a snapshot open for the whole drain.
#
#   bash bench/snapshot.sh [--events 150000] [--rounds 2]
#
# A snapshot held elsewhere keeps every finished queue row's index entries
# alive, so a claim that walked the queue from its start would slow down
# with every delivery made; the report shows how much of that is left.
# "without": the drain is awaited with herald.flush('1 second') calls (each
# holds its snapshot for at most a second).  "with": one session runs
# SELECT herald.flush('600 s'), which holds its statement's snapshot until
# every delivery is done.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

events=150000
rounds=2

usage() {
	bench_usage 2,7 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--events) events=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "snapshot.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$events" "$rounds"

bench_init snapshot "${args[@]}"
bench_nginx_start
herald_cluster_start "$BENCH_TMP/pg" >&2
bench_wait_worker >/dev/null

bench_psql -v url="$BENCH_NGINX_URL/snapshot" >/dev/null <<'SQL'
CREATE EXTENSION pg_herald;
CREATE TABLE orders (id int, customer text);
SELECT herald.create_channel('nginx', 'webhook', :'url', max_concurrency => 256);
SELECT herald.on_change('orders', 'orders', ARRAY['nginx'], ARRAY['INSERT']);
SQL

rows="snapshot held|deliveries|drain s|deliveries/s|dead tuples left by delivery"
for round in $(seq "$rounds"); do
	for mode in without with; do
		bench_say "round $round/$rounds: $events deliveries, $mode a long snapshot"
		bench_psql -c "INSERT INTO orders SELECT g, 'c' || g FROM generate_series(1, $events) g" >/dev/null
		started=$(date +%s.%N)
		if [ "$mode" = with ]; then
			[ "$(bench_psql -c "SELECT herald.flush('600 seconds')")" = t ] ||
				bench_die "the drain did not finish in 600 s"
		else
			[ "$(bench_drain 600 | cut -d' ' -f1)" = t ] ||
				bench_die "the drain did not finish in 600 s"
		fi
		seconds=$(echo "$(date +%s.%N) - $started" | bc)
		# the workers report their table statistics within a second or so of going idle
		sleep 2
		dead=$(bench_psql -c "SELECT sum(n_dead_tup) FROM pg_stat_user_tables
		                       WHERE schemaname = 'herald'
		                         AND relname IN ('event_log', 'delivery_queue', 'attempt_log', 'delivery_cursors')")
		rows+=$'\n'"$mode|$events|$(printf '%.2f' "$seconds")|$(echo "$events / $seconds" | bc)|$dead"
	done
done

{
	echo "==== snapshot: draining $events webhooks to nginx, with and without a snapshot held elsewhere ===="
	echo
	bench_table <<<"$rows"
	echo
	echo "drain s: the insert's commit -> every delivery delivered (one worker, max_concurrency 256)."
	echo "with:    one session waits in SELECT herald.flush('600 seconds'), holding its snapshot."
	echo "without: herald.flush('1 second') calls in a loop."
	echo "dead tuples: n_dead_tup of herald.event_log, delivery_queue, attempt_log and delivery_cursors"
	echo "             after the round (pg_stat_user_tables; autovacuum may have removed some meanwhile)."
	echo "cluster: scripts/cluster.sh defaults (fsync = off), one delivery worker."
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
