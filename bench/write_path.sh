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
#         usual do-it-yourself outbox;
#   (d)   the same table with PgQ's pgq.logutriga trigger (Debian's
#         postgresql-15-pgq3, installed when missing) into a PgQ queue;
#   (e)   the same with PgQ's pgq.sqltriga into another queue;
#
# then, in the same cluster, bulk statements of --bulk-rows rows each:
# INSERT ... SELECT into the tables of (a), (b), (c) and (d) and into a
# table whose row rule matches 1% of the rows (condition NEW.id % 100 = 0),
# and COPY FROM a file into (a), (b) and the 1% table.
#
#   bash bench/write_path.sh [--seconds 15] [--clients 2] [--rounds 3]
#                            [--bulk-rows 100000] [--durable] [--quick]
#
# --durable runs the cluster with fsync = on (the test clusters run with
# fsync = off, where commits cost almost nothing).  --quick is a smoke run
# of a few seconds: --seconds 1 --rounds 1 --bulk-rows 10000 (options given
# explicitly win).
#
# The pgbench variants run interleaved, a b b' b'' c d e a b ..., --rounds
# times, each for --seconds with --clients connections; the report gives
# each variant's median TPS and its ratio to (a).  Before each run:
# CHECKPOINT.  After each (b) and (b') run: herald.flush(), so no backlog
# spills into the next run, then VACUUM, so no autovacuum of what the run
# left competes with the next one.  The bulk statements also run interleaved,
# --rounds times, each timed alone (clock_timestamp() before it and after
# its commit) on an emptied table (TRUNCATE of the user's table, untimed),
# after a CHECKPOINT, with the delivery worker paused; after each one into
# a rule's table the worker is resumed and the backlog drained, untimed;
# after each one the database is vacuumed, untimed.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=
clients=2
rounds=
bulk_rows=
durable=0
quick=0

usage() {
	bench_usage 2,32 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--seconds) seconds=$2; shift 2 ;;
		--clients) clients=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--bulk-rows) bulk_rows=$2; shift 2 ;;
		--durable) durable=1; shift ;;
		--quick) quick=1; shift ;;
		-h | --help) usage 0 ;;
		*) echo "write_path.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
if [ "$quick" = 1 ]; then
	seconds=${seconds:-1}
	rounds=${rounds:-1}
	bulk_rows=${bulk_rows:-10000}
else
	seconds=${seconds:-15}
	rounds=${rounds:-3}
	bulk_rows=${bulk_rows:-100000}
fi
bench_positive_ints "$seconds" "$clients" "$rounds" "$bulk_rows"

bench_init write_path "${args[@]}"
bench_pgq
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
	bench_orders_table wp_rule1
	bench_orders_table wp_logutriga
	bench_orders_table wp_sqltriga
	bench_outbox wp_outbox
	cat <<'SQL'
SELECT herald.create_channel(name => 'wp', kind => 'webhook', target => :'url' || '/wp');
SELECT herald.on_change(name => 'wp', on_table => 'wp_rule', channels => ARRAY['wp'],
                        operations => ARRAY['INSERT']);
-- bulk only: a rule whose condition holds for 1% of the rows
SELECT herald.on_change(name => 'wp_1pct', on_table => 'wp_rule1', channels => ARRAY['wp'],
                        operations => ARRAY['INSERT'], condition => 'NEW.id % 100 = 0');

-- PgQ: one queue per trigger; no ticker and no consumer (capture alone)
CREATE EXTENSION pgq;
SELECT pgq.create_queue('wp_logutriga');
SELECT pgq.create_queue('wp_sqltriga');
CREATE TRIGGER wp_logutriga_capture AFTER INSERT ON wp_logutriga
    FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('wp_logutriga');
CREATE TRIGGER wp_sqltriga_capture AFTER INSERT ON wp_sqltriga
    FOR EACH ROW EXECUTE FUNCTION pgq.sqltriga('wp_sqltriga');


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
pgq_version=$(bench_psql -c "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")

for table in wp_plain wp_rule wp_outbox wp_logutriga wp_sqltriga; do
	cat >"$BENCH_TMP/$table.sql" <<SQL
\\set customer random(1, 1000)
\\set cents random(1, 10000000)
INSERT INTO $table (customer, amount) VALUES ('customer ' || :customer, :cents / 100.0);
SQL
done

variants=(a b b1 b2 c d e)
declare -A label=(
	[a]="(a)   plain table"
	[b]="(b)   row rule, delivered to nginx meanwhile"
	[b1]="(b')  row rule, delivery worker paused"
	[b2]="(b'') row rule, database no worker serves"
	[c]="(c)   PL/pgSQL outbox trigger"
	[d]="(d)   PgQ pgq.logutriga trigger"
	[e]="(e)   PgQ pgq.sqltriga trigger"
)
declare -A script=([a]=wp_plain [b]=wp_rule [b1]=wp_rule [b2]=wp_rule [c]=wp_outbox
	[d]=wp_logutriga [e]=wp_sqltriga)
declare -A database=([a]=herald [b]=herald [b1]=herald [b2]=herald_idle [c]=herald
	[d]=herald [e]=herald)
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
			# untimed: what the run and the drain left for autovacuum, done now
			# rather than during the next run
			bench_psql -c VACUUM >/dev/null
		fi
	done
done

# --- bulk statements --------------------------------------------------------

# the COPY file, written once: the same rows as the INSERT ... SELECT
copy_file=$BENCH_TMP/orders.copy
bench_psql -c "COPY (SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0
	FROM generate_series(1, $bulk_rows) AS g) TO STDOUT" >"$copy_file"
chmod 644 "$copy_file"
bulk_select="SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0 FROM generate_series(1, $bulk_rows) AS g"

bulk_variants=(ia ib ic id ie ca cb cc)
declare -A bulk_label=(
	[ia]="INSERT ... SELECT, plain table"
	[ib]="INSERT ... SELECT, row rule matching every row"
	[ic]="INSERT ... SELECT, row rule matching 1% of rows"
	[id]="INSERT ... SELECT, PL/pgSQL outbox trigger"
	[ie]="INSERT ... SELECT, PgQ pgq.logutriga trigger"
	[ca]="COPY FROM, plain table"
	[cb]="COPY FROM, row rule matching every row"
	[cc]="COPY FROM, row rule matching 1% of rows"
)
declare -A bulk_table=([ia]=wp_plain [ib]=wp_rule [ic]=wp_rule1 [id]=wp_outbox [ie]=wp_logutriga
	[ca]=wp_plain [cb]=wp_rule [cc]=wp_rule1)
# the variant whose time the others are compared with
declare -A bulk_base=([ia]=ia [ib]=ia [ic]=ia [id]=ia [ie]=ia [ca]=ca [cb]=ca [cc]=ca)
declare -A bulk_list
bulk_drain_rows="run|events|drained after s"

for round in $(seq "$rounds"); do
	for v in "${bulk_variants[@]}"; do
		table=${bulk_table[$v]}
		bench_say "bulk round $round/$rounds: ${bulk_label[$v]}"
		bench_psql -c "TRUNCATE $table" -c CHECKPOINT
		if [ "${v:0:1}" = i ]; then
			statement="INSERT INTO $table (customer, amount) $bulk_select"
		else
			statement="COPY $table (customer, amount) FROM '$copy_file'"
		fi
		before=$(bench_psql -c "SELECT coalesce(max(id), 0) FROM herald.event_log")
		bench_pause_worker "$worker"
		# autocommit: the second clock is read after the statement's commit
		secs=$(BENCH_SQL_TIMEOUT=900 bench_psql -v statement="$statement" <<'SQL'
SELECT clock_timestamp() AS t0 \gset
:statement;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), 4);
SQL
		)
		bench_resume_worker
		[[ $secs =~ ^[0-9]+(\.[0-9]+)?$ ]] || bench_die "could not time ${bulk_label[$v]}: $secs"
		bulk_list[$v]+="$secs "
		case "$table" in
			wp_rule | wp_rule1)
				events=$(bench_psql -c "SELECT count(*) FROM herald.event_log WHERE id > $before")
				t0=$(bench_psql -c "SELECT extract(epoch FROM clock_timestamp())")
				read -r flushed t_done < <(bench_drain 600)
				[ "$flushed" = t ] || bench_die "the backlog of ${bulk_label[$v]} did not drain within 10 minutes"
				drained=$(awk -v a="$t0" -v b="$t_done" 'BEGIN { printf "%.2f", b - a }')
				bulk_drain_rows+=$'\n'"${bulk_label[$v]}, round $round|$events|$drained"
				;;
		esac
		# as after the pgbench runs: no autovacuum of what this statement
		# left (its table, the event log, the outbox) competes with the next
		bench_psql -c VACUUM >/dev/null
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
bulk_median() {
	# shellcheck disable=SC2086
	bench_median ${bulk_list[$1]}
}
bulk_rows_table="statement|median s|vs plain|s per round"
for v in "${bulk_variants[@]}"; do
	m=$(bulk_median "$v")
	base=$(bulk_median "${bulk_base[$v]}")
	bulk_rows_table+=$'\n'"${bulk_label[$v]}|$(printf '%.3f' "$m")|$(awk -v m="$m" -v a="$base" 'BEGIN { printf "%.2fx", m / a }')|${bulk_list[$v]% }"
done
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
	echo "==== bulk: one statement of $bulk_rows rows, autocommit, $rounds interleaved rounds ===="
	echo
	bench_table <<<"$bulk_rows_table"
	echo
	bench_table <<<"$bulk_drain_rows"
	echo
	echo "(b)    the worker drains to nginx while pgbench writes: it, PostgreSQL and nginx share the"
	echo "       cores with pgbench.  After each (b) and (b') run, the queue is emptied (herald.flush)"
	echo "       (\"drained after s\" above) and the database vacuumed (VACUUM, untimed, so that no"
	echo "       autovacuum of what the run left competes with the next run) before the next run starts."
	echo "(b')   same table and rule as (b); the delivery worker is stopped with SIGSTOP (taken while"
	echo "       it sleeps in its wait, holding no lock) during the run, resumed after: capture alone."
	echo "(b'')  the same rule and table in database herald_idle, which the worker does not serve (it"
	echo "       serves \"herald\"); it keeps running, and commits there still wake it."
	echo "(c)    AFTER INSERT FOR EACH ROW, PL/pgSQL: INSERT INTO outbox (payload) VALUES"
	echo "       (jsonb_build_object('table', TG_TABLE_NAME, 'operation', TG_OP, 'new', to_jsonb(NEW))),"
	echo "       one outbox row per insert."
	echo "(d)    AFTER INSERT FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('wp_logutriga'), PgQ $pgq_version"
	echo "       (C): one row per insert in the queue's event table, the row url-encoded; no ticker,"
	echo "       no consumer."
	echo "(e)    the same with pgq.sqltriga('wp_sqltriga'): the row as a partial SQL statement."
	echo "bulk:  each statement is timed from clock_timestamp() before it to after its commit"
	echo "       (autocommit), on its table emptied by TRUNCATE first (untimed; pg_herald's, the outbox's"
	echo "       and PgQ's own tables are not truncated and keep growing, as in the pgbench runs), after"
	echo "       a CHECKPOINT, with the delivery worker paused (SIGSTOP) during the statement.  After each"
	echo "       one into a rule's table the worker is resumed and the backlog drained with"
	echo "       herald.flush('1 second') calls (\"drained after s\" above), untimed; after each one the"
	echo "       database is vacuumed (VACUUM, untimed), as after the pgbench runs.  vs plain: time over"
	echo "       the plain table's median of the same statement (INSERT ... SELECT or COPY).  The 1% rule's"
	echo "       condition is NEW.id % 100 = 0.  COPY reads a server-side text file of the same"
	echo "       $bulk_rows rows as the INSERT ... SELECT, written once."
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
