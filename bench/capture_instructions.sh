#!/usr/bin/env bash
# The write-path cost of a row rule in instructions, not seconds: a fixed
# workload run by one single-user backend (postgres --single) under
# Valgrind's callgrind, whose instruction count does not depend on what
# else the machine runs.  For before/after comparisons of the capture code
# on a shared machine, where the TPS ratios of bench/write_path.sh vary by
# a factor of two between rounds.
#
#   bash bench/capture_instructions.sh [--rows 3000] [--bulk-rows 30000] [--profiles DIR]
#
# --profiles DIR keeps each workload's callgrind profile as
# DIR/callgrind.out.WORKLOAD (read them with callgrind_annotate --inclusive=yes).
#
# In a throwaway cluster (scripts/cluster.sh, then stopped), in a database
# no worker serves: the four-column table of bench/write_path.sh plain, with
# a row rule matching every INSERT, with a rule whose condition matches 1%
# of the rows, and with the PL/pgSQL outbox trigger of write_path.sh (c).
# Each workload runs in a fresh copy of the stopped cluster:
#
#   single: --rows autocommit single-row INSERTs (one statement each);
#   bulk:   one INSERT ... SELECT of --bulk-rows rows;
#   copy:   one COPY FROM a CSV file of --bulk-rows rows.
#
# Reported: instructions per row of each table (the workload's, less those
# of its first statement run alone in another copy, over the rows after the
# first: the start-up and the first use of pg_herald and of the rules, paid
# once per session, are left out), the extra instructions per
# row over the plain table (what the trigger costs), and the plain table's
# instructions over each table's (the TPS ratio it would have if
# instructions were time; commits, the network and the WAL writer are
# outside this backend, so real ratios are closer to 1).  Single-user mode
# runs no background workers: a commit wakes nobody.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rows=3000
bulk_rows=30000
profiles=
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) rows=$2; shift 2 ;;
		--bulk-rows) bulk_rows=$2; shift 2 ;;
		--profiles) profiles=$(realpath -m "$2"); shift 2 ;;
		-h | --help) bench_usage 2,29 0 ;;
		*) echo "capture_instructions.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done
bench_init capture_instructions "${args[@]}"
bench_positive_ints "$rows" "$bulk_rows"
[ -z "$profiles" ] || mkdir -p "$profiles"
command -v valgrind >/dev/null || bench_die "valgrind is needed (apt-get install valgrind)"
herald_cluster_start "$BENCH_TMP/pg" >&2
{
	echo "CREATE DATABASE herald_idle;"
	echo "\\connect herald_idle"
	echo "SET client_min_messages = error;"
	echo "CREATE EXTENSION pg_herald;"
	for t in wp_plain wp_rule wp_rule1 wp_outbox; do bench_orders_table $t; done
	bench_outbox wp_outbox
	cat <<'SQL'
SELECT herald.create_channel(name => 'wp', kind => 'webhook', target => 'http://127.0.0.1:9/wp');
SELECT herald.on_change(name => 'wp', on_table => 'wp_rule', channels => ARRAY['wp'],
                        operations => ARRAY['INSERT']);
SELECT herald.on_change(name => 'wp_1pct', on_table => 'wp_rule1', channels => ARRAY['wp'],
                        operations => ARRAY['INSERT'], condition => 'NEW.id % 100 = 0');
CHECKPOINT;
SQL
} | bench_psql >/dev/null
herald_cluster_stop
bindir=$(herald_pg_bindir)

# the workloads: one statement per line (single-user mode reads lines)
for t in wp_plain wp_rule wp_rule1 wp_outbox; do
	awk -v t="$t" -v n="$rows" 'BEGIN {
		srand(1)
		for (i = 0; i < n; i++)
			printf "INSERT INTO %s (customer, amount) VALUES (%c%s%d%c, %.2f);\n", t, 39,
				"customer ", int(rand() * 1000) + 1, 39, int(rand() * 10000000) / 100.0
	}' >"$BENCH_TMP/single_$t.sql"
	# the first statement alone: what it costs once (start-up, loading the
	# library and the rules) is left out of the per-row figures
	echo "INSERT INTO $t (customer, amount) SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0" \
		"FROM generate_series(1, 1) AS g;" >"$BENCH_TMP/bulk_${t}_first.sql"
	echo "INSERT INTO $t (customer, amount) SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0" \
		"FROM generate_series(1, $bulk_rows) AS g;" >"$BENCH_TMP/bulk_$t.sql"
	head -n 1 "$BENCH_TMP/single_$t.sql" >"$BENCH_TMP/single_${t}_first.sql"
	echo "COPY $t (customer, amount) FROM '$BENCH_TMP/copy_1.csv' (FORMAT csv);" \
		>"$BENCH_TMP/copy_${t}_first.sql"
	echo "COPY $t (customer, amount) FROM '$BENCH_TMP/copy.csv' (FORMAT csv);" >"$BENCH_TMP/copy_$t.sql"
done
awk -v n="$bulk_rows" 'BEGIN { for (g = 1; g <= n; g++) printf "customer %d,%.2f\n", g % 1000, (g % 100000) / 100.0 }' \
	>"$BENCH_TMP/copy.csv"
head -n 1 "$BENCH_TMP/copy.csv" >"$BENCH_TMP/copy_1.csv"
chmod 644 "$BENCH_TMP"/*.sql "$BENCH_TMP"/*.csv
chmod 755 "$BENCH_TMP"

# instructions of one workload, in a fresh copy of the stopped cluster
instructions() {
	local workload=$1 copy=$BENCH_TMP/single out=/dev/null
	rm -rf "$copy"
	cp -a "$HERALD_PGDATA" "$copy"
	[ -z "$profiles" ] || out=$copy/callgrind.out
	_herald_as_postgres valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$bindir/postgres" --single -D "$copy" -j herald_idle \
		<"$BENCH_TMP/$workload.sql" >"$BENCH_TMP/$workload.log" 2>&1 ||
		bench_die "$workload failed: $(tail -5 "$BENCH_TMP/$workload.log")"
	if grep -q -E '^(ERROR|FATAL)' "$BENCH_TMP/$workload.log"; then
		bench_die "$workload: $(grep -m1 -E '^(ERROR|FATAL)' "$BENCH_TMP/$workload.log")"
	fi
	[ -z "$profiles" ] || cp "$out" "$profiles/callgrind.out.$workload"
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$BENCH_TMP/$workload.log" | tail -1
}

declare -A label=([wp_plain]="plain table" [wp_rule]="row rule, every row"
	[wp_rule1]="row rule, condition matching 1%" [wp_outbox]="PL/pgSQL outbox trigger")
report="workload|table|instructions per row|over plain per row|plain / this"
for kind in single bulk copy; do
	n=$rows
	[ "$kind" = single ] || n=$bulk_rows
	base=
	for t in wp_plain wp_rule wp_rule1 wp_outbox; do
		bench_say "$kind: ${label[$t]}"
		# per row: the whole workload less its first statement run alone
		first=$(profiles='' instructions "${kind}_${t}_first")
		ir=$(instructions "${kind}_$t")
		ir=$(awk -v i="$ir" -v f="$first" -v n="$n" 'BEGIN { printf "%.0f", (i - f) / (n - 1) }')
		[ -n "$base" ] || base=$ir
		report+=$'\n'"$kind|${label[$t]}|$ir|$((ir - base))"
		report+="|$(awk -v i="$ir" -v b="$base" 'BEGIN { printf "%.3f", b / i }')"
	done
done

{
	echo "==== capture in instructions: one single-user backend under callgrind ===="
	echo
	bench_table <<<"$report"
	echo
	echo "single: $rows autocommit single-row INSERTs, one per statement, parse and plan included."
	echo "bulk:   one INSERT ... SELECT of $bulk_rows rows."
	echo "copy:   one COPY FROM a file of $bulk_rows rows (CSV)."
	echo "Per row: the instructions of the whole backend running the workload, less those of the"
	echo "same backend running its first statement alone (start-up, loading pg_herald and the rules),"
	echo "over the rows after the first; each run in a fresh copy of the same stopped cluster,"
	echo "database herald_idle (served by no worker; single-user mode runs none).  The table:"
	echo "bigserial key, text, numeric(12,2), timestamptz default."
	bench_machine
} | bench_report
