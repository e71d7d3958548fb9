#!/usr/bin/env bash
# Commit-to-receipt latency of pg_herald webhooks at a steady event rate.
#
#   bash bench/latency.sh [--rates 100,1000] [--seconds 20] [--clients 4] [--warmup 3]
#
# For each rate R, pgbench inserts single rows into a watched table at R
# transactions per second (-R R: Poisson arrivals, one row per transaction,
# --clients connections) for --seconds, after a --warmup run at the same
# rate whose events are left out.  A row rule sends every row to nginx.
#
# Latency of one event = receipt time - commit time, where
#   commit time  = pg_xact_commit_timestamp() of the inserting transaction
#                  (track_commit_timestamp = on: the timestamp PostgreSQL
#                  records in the commit, just before the commit becomes
#                  visible and the worker is woken), microseconds;
#   receipt time = nginx's $msec when it handled the request, logged with the
#                  webhook-id header (msg_<oid>_<delivery id>), + 0.5 ms:
#                  nginx's clock has millisecond resolution and truncates, so
#                  the middle of that millisecond is used (error +-0.5 ms).
# Both clocks are the same machine's realtime clock.  Retries would log the
# same webhook-id again; only the first receipt counts.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rates=100,1000
seconds=20
clients=4
warmup=3

usage() {
	bench_usage 2,4 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--rates) rates=$2; shift 2 ;;
		--seconds) seconds=$2; shift 2 ;;
		--clients) clients=$2; shift 2 ;;
		--warmup) warmup=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "latency.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$seconds" "$clients" "$warmup"
[[ $rates =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || bench_die "--rates wants a list like 100,1000"

bench_init latency "${args[@]}"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"
herald_cluster_start "$BENCH_TMP/pg" "track_commit_timestamp = on" >&2
bench_wait_worker >/dev/null

bench_psql -v url="$BENCH_NGINX_URL" >/dev/null <<'SQL'
CREATE EXTENSION pg_herald;
-- phase: the target rate of the run that inserted the row, 0 for warm-ups
CREATE TABLE readings (
    id       bigserial PRIMARY KEY,
    phase    integer NOT NULL,
    sensor   text NOT NULL,
    value    double precision NOT NULL
);
SELECT herald.create_channel(name => 'latency', kind => 'webhook',
                             target => :'url' || '/log/latency');
SELECT herald.on_change(name => 'latency', on_table => 'readings', channels => ARRAY['latency'],
                        operations => ARRAY['INSERT']);
SQL

cat >"$BENCH_TMP/insert.sql" <<'SQL'
\set sensor random(1, 100)
INSERT INTO readings (phase, sensor, value) VALUES (:phase, 'sensor ' || :sensor, random());
SQL

jobs=$((clients < 2 ? clients : 2))
pgbench_notes=
IFS=, read -r -a rate_list <<<"$rates"
for rate in "${rate_list[@]}"; do
	for phase in 0 "$rate"; do
		run_seconds=$seconds
		[ "$phase" -ne 0 ] || run_seconds=$warmup
		bench_say "pgbench -R $rate -T $run_seconds ($([ "$phase" -eq 0 ] && echo warm-up || echo measured))"
		out=$(BENCH_SQL_TIMEOUT=$((run_seconds + 120)) bench_pgbench -n -c "$clients" -j "$jobs" \
			-R "$rate" -T "$run_seconds" -D phase="$phase" -f "$BENCH_TMP/insert.sql" 2>&1) ||
			bench_die "pgbench failed: $out"
		read -r flushed _ < <(bench_drain 60)
		[ "$flushed" = t ] || bench_die "the deliveries of the $rate/s run were not done 60 s after it"
		if [ "$phase" -ne 0 ]; then
			tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
			lat=$(awk '/^latency average/ { print $4 }' <<<"$out")
			lag=$(awk '/^rate limit schedule lag/ { print $6 }' <<<"$out")
			pgbench_notes+="  -R $rate: $tps tps achieved, pgbench transaction latency average $lat ms, schedule lag average ${lag:-?} ms"$'\n'
		fi
	done
done

# the receipts next to the data
bench_nginx_receipts receipts

# One row per measured event: its latency, and its offset into its run.
BENCH_SQL_TIMEOUT=600 bench_psql <<'SQL'
CREATE TABLE latency AS
WITH received AS (
    SELECT split_part(webhook_id, '_', 3)::bigint AS delivery_id, min(at) AS at
      FROM receipts WHERE webhook_id LIKE 'msg\_%' GROUP BY 1
), sample AS (
    SELECT r.phase,
           extract(epoch FROM pg_xact_commit_timestamp(r.xmin)) AS committed,
           (SELECT extract(epoch FROM min(a.started_at)) FROM herald.attempts a
             WHERE a.delivery_id = d.id) AS sent,
           rc.at AS received
      FROM readings r
      JOIN herald.events e ON e.rule = 'latency' AND (e.payload -> 'new' ->> 'id')::bigint = r.id
      JOIN herald.deliveries d ON d.event_id = e.id
      LEFT JOIN received rc ON rc.delivery_id = d.id
     WHERE r.phase > 0
)
SELECT phase, committed,
       committed - min(committed) OVER (PARTITION BY phase) AS offset_s,
       (received + 0.0005 - committed) * 1000 AS receipt_ms,
       (sent - committed) * 1000 AS sent_ms
  FROM sample;
SQL

stats=$(bench_psql <<'SQL'
SELECT phase,
       count(*),
       round(count(*) / nullif(max(committed) - min(committed), 0)),
       count(receipt_ms),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY receipt_ms)::numeric, 1),
       round(percentile_disc(0.9) WITHIN GROUP (ORDER BY receipt_ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY receipt_ms)::numeric, 1),
       round(max(receipt_ms)::numeric, 1),
       count(*) FILTER (WHERE receipt_ms > 25),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY sent_ms)::numeric, 2),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY sent_ms)::numeric, 2),
       round(min(receipt_ms)::numeric, 1)
  FROM latency GROUP BY phase ORDER BY phase;
SQL
)
# the same, by 5-second window of each run, to show drift or a stall
windows=$(bench_psql <<'SQL'
SELECT phase, (floor(offset_s / 5) * 5)::int || '-' || (floor(offset_s / 5) * 5 + 5)::int,
       count(*),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY receipt_ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY receipt_ms)::numeric, 1),
       round(max(receipt_ms)::numeric, 1)
  FROM latency GROUP BY phase, floor(offset_s / 5) ORDER BY phase, floor(offset_s / 5);
SQL
)

rows="target events/s|events|achieved events/s|received|p50 ms|p90 ms|p99 ms|max ms|over 25 ms"
sent_rows="target events/s|commit -> attempt started, p50 ms|p99 ms|min commit -> receipt ms"
while IFS='|' read -r phase n achieved received p50 p90 p99 max slow s50 s99 min; do
	[ -n "$phase" ] || continue
	rows+=$'\n'"$phase|$n|$achieved|$received|$p50|$p90|$p99|$max|$slow"
	sent_rows+=$'\n'"$phase|$s50|$s99|$min"
	[ "$received" -eq "$n" ] || bench_say "WARNING: $((n - received)) of $n events at $phase/s were not seen by nginx"
done <<<"$stats"

{
	echo
	echo "==== latency: commit -> receipt by nginx on 127.0.0.1, one row rule, single-row transactions ===="
	echo
	bench_table <<<"$rows"
	echo
	bench_table <<<"$sent_rows"
	echo
	bench_table <<<"target events/s|seconds into the run|events|p50 ms|p99 ms|max ms"$'\n'"$windows"
	echo
	echo "latency = nginx's receipt time - the transaction's commit timestamp (track_commit_timestamp)."
	echo "          Receipt = nginx's \$msec logged with the webhook-id header, + 0.5 ms: \$msec is"
	echo "          truncated to the millisecond, so every latency here is +-0.5 ms."
	echo "          Measured by the receiver and by PostgreSQL, not by pg_herald."
	echo "commit -> attempt started: herald.attempts.started_at of the first attempt (pg_herald's own"
	echo "          clock reading just before sending) - commit timestamp: the queue part of the latency."
	echo "load:     pgbench -n -c $clients -j $jobs -R RATE -T $seconds, one INSERT per transaction, after"
	echo "          a ${warmup}-s warm-up at the same rate (left out); events = rows of the measured run."
	printf '%s' "$pgbench_notes"
	echo "cluster:  scripts/cluster.sh defaults (fsync = off) + track_commit_timestamp = on; one delivery worker."
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
