#!/usr/bin/env bash
# NATS JetStream throughput: how fast pg_herald drains N events into a
# stream with 3 replicas, next to N webhooks to nginx in the same run.
#
#   bash bench/nats.sh [--events 50000] [--rounds 2] [--timeout 600]
#
# One PostgreSQL cluster (one delivery worker), nginx (return 204) and three
# nats-server -js on 127.0.0.1 forming a cluster, with a stream of 3
# replicas (file storage) capturing bench.>.  Each round, for each sender
# in turn (webhook to nginx, then nats to the stream):
#   1. one transaction inserts N rows into the sender's table, whose row
#      rule sends each row to the sender's channel;
#   2. herald.flush('1 second') in a loop until every delivery is done.
# Drain time = COMMIT issued -> the flush that saw the queue done;
# deliveries/s = delivered / drain.  A nats delivery counts once the
# stream acknowledged it (stored on a quorum of the 3 servers).  The
# stream's message count is checked at the end (N x rounds).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

events=50000
rounds=2
drain_timeout=600

usage() {
	bench_usage 2,5 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--events) events=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--timeout) drain_timeout=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "nats.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$events" "$rounds" "$drain_timeout"

bench_init nats "${args[@]}"
command -v nats-server >/dev/null || bench_die "nats-server not found (bash scripts/deps.sh)"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"

# --- three NATS servers, a 3-replica stream -----------------------------------
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
tool=$BENCH_TMP/nats_tool
cc -O2 -o "$tool" "$BENCH_REPO/test/nats_tool.c" $(pkg-config --cflags --libs libnats libcrypto)
ports=() routes=() monitors=()
for i in 1 2 3; do
	ports+=("$(free_port)")
	routes+=("$(free_port)")
	monitors+=("$(free_port)")
done
urls=
hosts=
for i in 0 1 2; do
	dir=$BENCH_TMP/nats$i
	mkdir -p "$dir"
	route_list=
	for j in 0 1 2; do
		[ "$j" = "$i" ] || route_list+="nats-route://127.0.0.1:${routes[$j]}, "
	done
	cat >"$dir/nats.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:${ports[$i]}
http: 127.0.0.1:${monitors[$i]}
jetstream { store_dir: "$dir/store" }
cluster { name: bench, listen: 127.0.0.1:${routes[$i]}, routes: [ ${route_list%, } ] }
EOF
	bench_bg $((drain_timeout * 4 + 600)) nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1
	urls+="${urls:+,}nats://127.0.0.1:${ports[$i]}"
	hosts+="${hosts:+,}127.0.0.1:${ports[$i]}"
done
# JetStream is up when every server's /healthz says so (meta leader elected)
for i in 0 1 2; do
	for _ in $(seq 300); do
		curl -sf "http://127.0.0.1:${monitors[$i]}/healthz" >/dev/null && break
		sleep 0.1
	done
	curl -sf "http://127.0.0.1:${monitors[$i]}/healthz" >/dev/null ||
		bench_die "NATS server $i is not healthy after 30 s (see $BENCH_TMP/nats$i/nats.log)"
done
"$tool" stream "$urls" BENCH 'bench.>' 3 >&2 || bench_die "could not create the stream"
bench_say "NATS cluster on ports ${ports[*]}, stream BENCH with 3 replicas"

herald_cluster_start "$BENCH_TMP/pg" >&2
bench_wait_worker >/dev/null
bench_psql -v url="$BENCH_NGINX_URL" -v nats="nats://$hosts/bench.{{rule}}" >/dev/null <<'SQL'
CREATE EXTENSION pg_herald;
CREATE TABLE to_webhook (id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(12, 2) NOT NULL);
CREATE TABLE to_nats (LIKE to_webhook INCLUDING ALL);
SELECT herald.create_channel(name => 'webhook', kind => 'webhook', target => :'url' || '/bench');
SELECT herald.create_channel(name => 'nats', kind => 'nats', target => :'nats');
SELECT herald.on_change(name => 'webhook', on_table => 'to_webhook', channels => ARRAY['webhook'],
                        operations => ARRAY['INSERT']);
SELECT herald.on_change(name => 'nats', on_table => 'to_nats', channels => ARRAY['nats'],
                        operations => ARRAY['INSERT']);
SQL

rows="round|sender|delivered|dead|attempts|drain s|deliveries/s"
declare -A rates
for round in $(seq "$rounds"); do
	for sender in webhook nats; do
		bench_say "round $round, $sender: inserting $events rows in one transaction, then draining"
		read -r t_commit < <(BENCH_SQL_TIMEOUT=900 bench_psql -v n="$events" -v t="to_$sender" <<'SQL'
BEGIN;
INSERT INTO :"t" (customer, amount)
SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0 FROM generate_series(1, :n) AS g;
SELECT extract(epoch FROM clock_timestamp()) AS t_commit \gset
COMMIT;
SELECT :t_commit;
SQL
		)
		read -r flushed t_done < <(bench_drain "$drain_timeout")
		read -r delivered dead attempts < <(bench_psql -F ' ' -v c="$sender" <<'SQL'
SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'dead'),
       coalesce(sum(attempts), 0)
  FROM herald.deliveries WHERE channel = :'c';
SQL
		)
		[ "$flushed" = t ] || bench_say "WARNING: gave up after $drain_timeout s"
		read -r drain_s rate < <(awk -v c="$t_commit" -v d="$t_done" -v n="$events" \
			'BEGIN { printf "%.2f %.0f\n", d - c, n / (d - c) }')
		rows+=$'\n'"$round|$sender|$delivered|$dead|$attempts|$drain_s|$rate"
		rates[$sender]+="$rate "
		bench_say "round $round, $sender: $drain_s s = $rate/s"
	done
done
stored=$("$tool" count "$urls" BENCH)

# shellcheck disable=SC2086
median_webhook=$(bench_median ${rates[webhook]})
# shellcheck disable=SC2086
median_nats=$(bench_median ${rates[nats]})
{
	echo
	echo "==== nats: draining $events events into a 3-replica JetStream stream vs $events webhooks to nginx ===="
	echo
	bench_table <<<"$rows"
	echo
	echo "medians:   webhook $median_webhook/s, nats $median_nats/s, nats/webhook $(awk -v a="$median_nats" -v b="$median_webhook" 'BEGIN { printf "%.2f", a / b }')"
	echo "stream:    BENCH holds $stored messages ($((events * rounds)) published)"
	echo "drain s:   COMMIT issued -> herald.flush('1 second'), called in a loop, returned true;"
	echo "           delivered/attempts are cumulative per channel over the rounds."
	echo "nats:      3 nats-server $(nats-server --version 2>&1 | awk '{ print $2 }') (cluster routes on 127.0.0.1), file storage,"
	echo "           a delivery counts when the stream acknowledges it; one connection per worker."
	echo "cluster:   scripts/cluster.sh defaults (fsync = off), 1 delivery worker."
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
