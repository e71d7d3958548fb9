#!/usr/bin/env bash
# Write-path cost of a row rule: pgbench single-row INSERT throughput into
#
#   (a)   a plain table;
#   (b)   the same table with a pg_herald row rule matching every INSERT, its
#         channel pointing at nginx, so the delivery worker drains the queue
#         while pgbench writes (the cost a real deployment pays);
#   (b')  the same as (b) with the delivery worker paused (SIGSTOP, taken
#         while it sleeps in its wait, so it holds no lock) during the run:
#         the capture cost alone, nothing is claimed or sent meanwhile;
#   (b'') the same rule and table in a second database, which no delivery
#         worker serves (herald.database is "herald"): capture, plus whatever
#         the commit-time wake-up of the worker costs;
#   (c)   the same table with a hand-written PL/pgSQL AFTER INSERT FOR EACH
#         ROW trigger inserting the row as jsonb into an event table: the
#         usual do-it-yourself outbox.
#
#   bash bench/write_path.sh [--seconds 15] [--clients 2] [--rounds 3] [--durable]
#
# --durable runs the cluster with fsync = on (the test clusters run with
# fsync = off, where commits cost almost nothing).
#
# The variants run interleaved, a b b' b'' c a b b' b'' c ..., --rounds
# times, each for --seconds with --clients connections; the report gives
# each variant's median TPS and its ratio to (a).  Before each run:
# CHECKPOINT.  After each (b) and (b') run: herald.flush(), so no backlog
# spills into the next run.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=15
clients=2
rounds=3
durable=0

usage() {
	bench_usage 2,18 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--seconds) seconds=$2; shift 2 ;;
		--clients) clients=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--durable) durable=1; shift ;;
		-h | --help) usage 0 ;;
		*) echo "write_path.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$seconds" "$clients" "$rounds"

bench_init write_path "${args[@]}"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"
if [ "$durable" = 1 ]; then
	herald_cluster_start "$BENCH_TMP/pg" "fsync = on" "synchronous_commit = on" >&2
else
	herald_cluster_start "$BENCH_TMP/pg" >&2
fi
worker=$(bench_wait_worker)

{
	echo "CREATE EXTENSION pg_herald;"
	bench_orders_table wp_plain
	bench_orders_table wp_rule
	bench_orders_table wp_outbox
	cat <<'SQL'
SELECT herald.create_channel(name => 'wp', kind => 'webhook', target => :'url' || '/wp');
SELECT herald.on_change(name => 'wp', on_table => 'wp_rule', channels => ARRAY['wp'],
                        operations => ARRAY['INSERT']);

-- the do-it-yourself outbox
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE FUNCTION outbox_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (payload)
    VALUES (jsonb_build_object('table', TG_TABLE_NAME, 'operation', TG_OP, 'new', to_jsonb(NEW)));
    RETURN NULL;
END
$$;
CREATE TRIGGER wp_outbox_capture AFTER INSERT ON wp_outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_capture();

CREATE DATABASE herald_idle;
\connect herald_idle
CREATE EXTENSION pg_herald;
SQL
	bench_orders_table wp_rule
	cat <<'SQL'
SELECT herald.create_channel(name => 'wp', kind => 'webhook', target => :'url' || '/wp');
SELECT herald.on_change(name => 'wp', on_table => 'wp_rule', channels => ARRAY['wp'],
                        operations => ARRAY['INSERT']);
SQL
} | bench_psql -v url="$BENCH_NGINX_URL" >/dev/null

for table in wp_plain wp_rule wp_outbox; do
	cat >"$BENCH_TMP/$table.sql" <<SQL
\\set customer random(1, 1000)
\\set cents random(1, 10000000)
INSERT INTO $table (customer, amount) VALUES ('customer ' || :customer, :cents / 100.0);
SQL
done

variants=(a b b1 b2 c)
declare -A label=(
	[a]="(a)   plain table"
	[b]="(b)   row rule, delivered to nginx meanwhile"
	[b1]="(b')  row rule, delivery worker paused"
	[b2]="(b'') row rule, database no worker serves"
	[c]="(c)   PL/pgSQL outbox trigger"
)
declare -A script=([a]=wp_plain [b]=wp_rule [b1]=wp_rule [b2]=wp_rule [c]=wp_outbox)
declare -A database=([a]=herald [b]=herald [b1]=herald [b2]=herald_idle [c]=herald)
declare -A tps_list
backlog_rows="run|rows inserted|pending at end of run|drained after s"
b_total=0

for round in $(seq "$rounds"); do
	for v in "${variants[@]}"; do
		bench_psql -c CHECKPOINT
		bench_say "round $round/$rounds: ${label[$v]}"
		[ "$v" != b1 ] || bench_pause_worker "$worker"
		out=$(BENCH_SQL_TIMEOUT=$((seconds + 120)) bench_pgbench -n -c "$clients" -j "$clients" \
			-T "$seconds" -f "$BENCH_TMP/${script[$v]}.sql" "${database[$v]}" 2>&1) ||
			bench_die "pgbench failed: $out"
		tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
		[[ $tps =~ ^[0-9]+$ ]] || bench_die "could not read pgbench's output: $out"
		tps_list[$v]+="$tps "
		if [ "$v" = b ] || [ "$v" = b1 ]; then
			read -r inserted pending t0 < <(bench_psql -F ' ' -c "SELECT count(*),
				count(*) FILTER (WHERE status = 'pending'), extract(epoch FROM clock_timestamp())
				FROM herald.deliveries")
			bench_resume_worker
			read -r flushed t_done < <(bench_drain 600)
			[ "$flushed" = t ] || bench_die "the ${label[$v]%%  *} backlog did not drain within 10 minutes"
			drained=$(awk -v a="$t0" -v b="$t_done" 'BEGIN { printf "%.2f", b - a }')
			backlog_rows+=$'\n'"${label[$v]%%  *}, round $round|$((inserted - b_total))|$pending|$drained"
			b_total=$inserted
		fi
	done
done

median() {
	# shellcheck disable=SC2086
	bench_median ${tps_list[$1]}
}
a_median=$(median a)
rows="variant|median TPS|vs (a)|TPS per round"
for v in "${variants[@]}"; do
	m=$(median "$v")
	rows+=$'\n'"${label[$v]}|$(printf '%.0f' "$m")|$(awk -v m="$m" -v a="$a_median" 'BEGIN { printf "%.3f", m / a }')|${tps_list[$v]% }"
done
c_median=$(median c)
b_median=$(median b)
b1_median=$(median b1)
b2_median=$(median b2)

{
	echo
	echo "==== write path: pgbench single-row INSERT, $clients clients, ${seconds} s per run, $rounds interleaved rounds ===="
	echo
	bench_table <<<"$rows"
	echo
	awk -v b="$b_median" -v b1="$b1_median" -v b2="$b2_median" -v c="$c_median" 'BEGIN {
		printf "row rule vs PL/pgSQL outbox: (b)/(c) = %.3f, (b\x27)/(c) = %.3f, (b\x27\x27)/(c) = %.3f\n",
			b / c, b1 / c, b2 / c }'
	echo
	bench_table <<<"$backlog_rows"
	echo
	echo "(b)    the worker drains to nginx while pgbench writes: it, PostgreSQL and nginx share the"
	echo "       cores with pgbench.  After each (b) and (b') run, the queue is emptied (herald.flush)"
	echo "       (\"drained after s\" above) before the next run starts."
	echo "(b')   same table and rule as (b); the delivery worker is stopped with SIGSTOP (taken while"
	echo "       it sleeps in its wait, holding no lock) during the run, resumed after: capture alone."
	echo "(b'')  the same rule and table in database herald_idle, which the worker does not serve (it"
	echo "       serves \"herald\"); it keeps running, and commits there still wake it."
	echo "(c)    AFTER INSERT FOR EACH ROW, PL/pgSQL: INSERT INTO outbox (payload) VALUES"
	echo "       (jsonb_build_object('table', TG_TABLE_NAME, 'operation', TG_OP, 'new', to_jsonb(NEW))),"
	echo "       one row per insert; pg_herald's rule writes two (event + delivery)."
	echo "load:  pgbench -n -c $clients -j $clients -T $seconds, INSERT INTO t (customer, amount) VALUES (...),"
	echo "       autocommit; the tables are identical (bigserial key, text, numeric, timestamptz default)."
	if [ "$durable" = 1 ]; then
		echo "cluster: scripts/cluster.sh defaults but fsync = on, synchronous_commit = on (durable"
		echo "       commits), one delivery worker."
	else
		echo "cluster: scripts/cluster.sh defaults (fsync = off: commits are cheap, which makes any trigger's"
		echo "       relative cost larger), one delivery worker."
	fi
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
