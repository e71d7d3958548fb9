#!/usr/bin/env bash
# Threshold rules: what watching a table costs its writers, how soon a rule
# that fires reaches a webhook, and whether the scheduler keeps up with many
# rules under write load.  Three measures on one cluster:
#
#   bash bench/thresholds.sh [--seconds 10] [--rounds 3] [--clients 2] [--flips 200]
#                            [--rules 1000] [--load-seconds 30] [--load-clients 4]
#                            [--rate 1000] [--durable]
#
# 1. Write path: pgbench single-row INSERTs (--clients connections,
#    --seconds per run) into
#      (a)   a plain table;
#      (b)   the same table watched by a threshold rule, min_interval 0:
#            the scheduler evaluates it after every round of commits while
#            pgbench writes;
#      (b')  the same as (b) with the scheduler paused (SIGSTOP, taken while
#            it sleeps in its wait, so it holds no lock): the writers' side
#            alone (noting the write, handing it over at commit);
#      (b'') the same as (b) with min_interval '1 second';
#      (c)   the same table with a do-nothing PL/pgSQL AFTER ... FOR EACH
#            STATEMENT trigger: for reference, what firing any trigger costs.
#    The rules' metric is SELECT max(id) FROM the table (an index lookup
#    however large the table grows), their threshold is never crossed.
#    Interleaved a b b' b'' c a b ..., --rounds times; median TPS and ratio
#    to (a).  Target: >= 0.97.
# 2. Commit -> rule.fired received: a rule with min_interval 0 on a gauge
#    is fired and resolved --flips times, one commit at a time, each
#    awaited with herald.flush().  Latency = nginx's receipt time - the
#    commit timestamp of the write.  Target: p99 <= 50 ms.
# 3. --rules threshold rules watch one table (metric SELECT max(id),
#    thresholds spread so that about half of them fire during the run)
#    while pgbench inserts for --load-seconds with --load-clients
#    connections at --rate transactions per second (0: as fast as it can).
#    Evaluations/s, and the lag from a row's commit to the first evaluation
#    of each rule whose value includes it.  Target: lag p99 <= 1 s.
#
# --durable runs the cluster with fsync = on (the test clusters run with
# fsync = off, where commits cost almost nothing).  About 4 minutes with the
# defaults on 2 cores.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=10
rounds=3
clients=2
flips=200
rules=1000
load_seconds=30
load_clients=4
rate=1000
durable=0

usage() {
	bench_usage 2,39 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--seconds) seconds=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--clients) clients=$2; shift 2 ;;
		--flips) flips=$2; shift 2 ;;
		--rules) rules=$2; shift 2 ;;
		--load-seconds) load_seconds=$2; shift 2 ;;
		--load-clients) load_clients=$2; shift 2 ;;
		--rate) rate=$2; shift 2 ;;
		--durable) durable=1; shift ;;
		-h | --help) usage 0 ;;
		*) echo "thresholds.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$seconds" "$rounds" "$clients" "$flips" "$rules" "$load_seconds" "$load_clients"
[[ $rate =~ ^(0|[1-9][0-9]*)$ ]] || bench_die "--rate wants transactions per second, 0 for no limit"

bench_init thresholds "${args[@]}"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"
if [ "$durable" = 1 ]; then
	herald_cluster_start "$BENCH_TMP/pg" "track_commit_timestamp = on" \
		"fsync = on" "synchronous_commit = on" >&2
else
	herald_cluster_start "$BENCH_TMP/pg" "track_commit_timestamp = on" >&2
fi
bench_wait_worker >/dev/null
scheduler=$(bench_wait_worker "pg_herald scheduler")

# now, by the server's clock (the clock evaluated_at and commit timestamps
# are read from)
server_now() {
	bench_psql -c "SELECT extract(epoch FROM clock_timestamp())"
}

# --- 1. write path ------------------------------------------------------------

{
	echo "CREATE EXTENSION pg_herald;"
	bench_orders_table th_plain
	bench_orders_table th_watched
	bench_orders_table th_watched_1s
	bench_orders_table th_trigger
	cat <<'SQL'
SELECT herald.create_channel(name => 'bench', kind => 'webhook', target => :'url' || '/thresholds');
SELECT herald.create_channel(name => 'fired', kind => 'webhook', target => :'url' || '/log/fired');
-- never crossed: every evaluation is logged, nothing fires
SELECT herald.on_threshold(name => 'watched', metric => 'SELECT max(id) FROM th_watched',
                           op => '>', threshold => 1e15, channels => ARRAY['bench'],
                           watch => ARRAY['th_watched'::regclass], min_interval => '0');
SELECT herald.on_threshold(name => 'watched-1s', metric => 'SELECT max(id) FROM th_watched_1s',
                           op => '>', threshold => 1e15, channels => ARRAY['bench'],
                           watch => ARRAY['th_watched_1s'::regclass], min_interval => '1 second');

-- the reference: a statement trigger that does nothing
CREATE FUNCTION th_nothing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END
$$;
CREATE TRIGGER th_nothing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON th_trigger
    FOR EACH STATEMENT EXECUTE FUNCTION th_nothing();
SQL
} | bench_psql -v url="$BENCH_NGINX_URL" >/dev/null

for table in th_plain th_watched th_watched_1s th_trigger; do
	cat >"$BENCH_TMP/$table.sql" <<SQL
\\set customer random(1, 1000)
\\set cents random(1, 10000000)
INSERT INTO $table (customer, amount) VALUES ('customer ' || :customer, :cents / 100.0);
SQL
done
read -r flushed _ < <(bench_drain 30)
[ "$flushed" = t ] || bench_die "the first evaluations of the rules were not done after 30 s"

variants=(a b b1 b2 c)
declare -A label=(
	[a]="(a)   plain table"
	[b]="(b)   watched, min_interval 0, scheduler evaluating meanwhile"
	[b1]="(b')  watched, min_interval 0, scheduler paused"
	[b2]="(b'') watched, min_interval 1 s"
	[c]="(c)   do-nothing PL/pgSQL statement trigger"
)
declare -A script=([a]=th_plain [b]=th_watched [b1]=th_watched [b2]=th_watched_1s [c]=th_trigger)
declare -A rule=([b]=watched [b1]=watched [b2]=watched-1s)
declare -A tps_list evals_list cpu_list wakes_list

for round in $(seq "$rounds"); do
	for v in "${variants[@]}"; do
		bench_psql -c CHECKPOINT
		bench_say "write path, round $round/$rounds: ${label[$v]}"
		[ "$v" != b1 ] || bench_pause_worker "$scheduler"
		t0=$(server_now)
		read -r cpu0 waits0 < <(bench_proc_usage "$scheduler")
		out=$(BENCH_SQL_TIMEOUT=$((seconds + 120)) bench_pgbench -n -c "$clients" -j "$clients" \
			-T "$seconds" -f "$BENCH_TMP/${script[$v]}.sql" 2>&1) ||
			bench_die "pgbench failed: $out"
		read -r cpu1 waits1 < <(bench_proc_usage "$scheduler")
		t1=$(server_now)
		bench_resume_worker
		tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
		commits=$(awk '/^number of transactions actually processed: / { print $NF }' <<<"$out")
		if ! [[ $tps =~ ^[0-9]+$ ]] || ! [[ $commits =~ ^[0-9]+$ ]]; then
			bench_die "could not read pgbench's output: $out"
		fi
		tps_list[$v]+="$tps "
		cpu_list[$v]+="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') "
		wakes_list[$v]+="$(awk -v a="$waits0" -v b="$waits1" -v n="$commits" 'BEGIN { printf "%.3f", (b - a) / n }') "
		[ -n "${rule[$v]:-}" ] || continue
		read -r flushed _ < <(bench_drain 60)
		[ "$flushed" = t ] || bench_die "the evaluations of the ${label[$v]%%  *} run were not done 60 s after it"
		evals=$(bench_psql -v rule="${rule[$v]}" -v t0="$t0" -v t1="$t1" <<'SQL'
SELECT count(*) FROM herald.evaluations
 WHERE rule = :'rule' AND evaluated_at BETWEEN to_timestamp(:t0) AND to_timestamp(:t1);
SQL
		)
		evals_list[$v]+="$evals "
	done
done

median() {
	# shellcheck disable=SC2086
	bench_median $1
}
a_median=$(median "${tps_list[a]}")
write_rows="variant|median TPS|vs (a)|target|met|TPS per round|evaluations per run|scheduler CPU s per run|scheduler wake-ups per commit"
for v in "${variants[@]}"; do
	m=$(median "${tps_list[$v]}")
	ratio=$(awk -v m="$m" -v a="$a_median" 'BEGIN { printf "%.3f", m / a }')
	target=
	met=
	evals=-
	if [ -n "${rule[$v]:-}" ]; then
		target=">= 0.97"
		met=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.97 ? "yes" : "no") }')
		evals=$(median "${evals_list[$v]}")
	fi
	write_rows+=$'\n'"${label[$v]}|$(printf '%.0f' "$m")|$ratio|$target|$met|${tps_list[$v]% }|$evals|$(median "${cpu_list[$v]}")|$(median "${wakes_list[$v]}")"
done

# --- 2. commit -> rule.fired received ---------------------------------------

bench_say "latency: $flips flips of a gauge, each fired and resolved"
bench_psql >/dev/null <<'SQL'
-- the latest row is the gauge's value: k > 0 fires flip k, -k resolves it
CREATE TABLE th_gauge (id bigserial PRIMARY KEY, v bigint NOT NULL);
SELECT herald.on_threshold(name => 'gauge', metric => 'SELECT v FROM th_gauge ORDER BY id DESC LIMIT 1',
                           op => '>', threshold => 0, channels => ARRAY['fired'],
                           watch => ARRAY['th_gauge'::regclass], min_interval => '0');
CREATE PROCEDURE th_flip(flips integer)
LANGUAGE plpgsql AS $$
BEGIN
    FOR k IN 1..flips LOOP
        INSERT INTO th_gauge (v) VALUES (k);
        COMMIT;
        IF NOT herald.flush('5 seconds') THEN
            RAISE EXCEPTION 'flip %: herald.flush() timed out after firing', k;
        END IF;
        INSERT INTO th_gauge (v) VALUES (-k);
        COMMIT;
        IF NOT herald.flush('5 seconds') THEN
            RAISE EXCEPTION 'flip %: herald.flush() timed out after resolving', k;
        END IF;
    END LOOP;
END;
$$;
SQL
read -r flushed _ < <(bench_drain 30)
[ "$flushed" = t ] || bench_die "the first evaluation of the gauge rule was not done after 30 s"
BENCH_SQL_TIMEOUT=$((flips * 10 + 60)) bench_psql -c "CALL th_flip($flips)"

bench_nginx_receipts receipts
BENCH_SQL_TIMEOUT=600 bench_psql <<'SQL'
-- one row per event of the gauge rule: its write's commit, its evaluation,
-- its first attempt and its receipt
CREATE TABLE flip_latency AS
WITH received AS (
    SELECT webhook_id, min(at) AS at FROM receipts GROUP BY 1
), flip AS (
    SELECT e.type,
           extract(epoch FROM pg_xact_commit_timestamp(g.xmin)) AS committed,
           extract(epoch FROM ev.evaluated_at) AS evaluated,
           (SELECT extract(epoch FROM min(a.started_at)) FROM herald.attempts a
             WHERE a.delivery_id = d.id) AS sent,
           rc.at AS received
      FROM herald.events e
      JOIN th_gauge g ON g.v = (e.payload ->> 'value')::bigint
      LEFT JOIN herald.evaluations ev ON ev.event_id = e.id
      LEFT JOIN herald.deliveries d ON d.event_id = e.id
      LEFT JOIN received rc ON rc.webhook_id = d.webhook_id
     WHERE e.rule = 'gauge'
)
SELECT type,
       (received + 0.0005 - committed) * 1000 AS receipt_ms,
       (evaluated - committed) * 1000 AS evaluated_ms,
       (sent - committed) * 1000 AS sent_ms
  FROM flip;
SQL
flip_stats=$(bench_psql -F '|' <<'SQL'
WITH m (ord, what, ms) AS (
    SELECT 1, 'commit -> received by nginx, rule.fired', receipt_ms FROM flip_latency
     WHERE type = 'rule.fired'
    UNION ALL
    SELECT 2, 'commit -> received by nginx, rule.resolved', receipt_ms FROM flip_latency
     WHERE type = 'rule.resolved'
    UNION ALL
    SELECT 3, 'commit -> evaluation started (evaluated_at), rule.fired', evaluated_ms
      FROM flip_latency WHERE type = 'rule.fired'
    UNION ALL
    SELECT 4, 'commit -> first attempt started, rule.fired', sent_ms FROM flip_latency
     WHERE type = 'rule.fired'
)
SELECT what, count(*), count(ms),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(max(ms)::numeric, 1),
       CASE ord WHEN 1 THEN 'p99 <= 50 ms' ELSE '' END,
       CASE ord WHEN 1 THEN CASE WHEN percentile_disc(0.99) WITHIN GROUP (ORDER BY ms) <= 50
                                 THEN 'yes' ELSE 'no' END
                ELSE '' END
  FROM m GROUP BY ord, what ORDER BY ord;
SQL
)
flip_rows="interval|events|measured|p50 ms|p90 ms|p99 ms|max ms|target|met"$'\n'"$flip_stats"
while IFS='|' read -r what n measured _; do
	[ "$n" -eq "$flips" ] || bench_say "WARNING: $n events for $flips flips ($what)"
	[ "$measured" -eq "$n" ] || bench_say "WARNING: $((n - measured)) of $n events not measured ($what)"
done <<<"$flip_stats"

# --- 3. many rules under write load -------------------------------------------

# Thresholds k * step, k = 1..rules: about half of them are crossed during
# the run, if it inserts about the rows expected.
if [ "$rate" -gt 0 ]; then
	expected=$((rate * load_seconds))
else
	expected=$(awk -v t="$a_median" -v s="$load_seconds" 'BEGIN { printf "%.0f", t * s }')
fi
step=$(((2 * expected + rules - 1) / rules))
[ "$step" -gt 0 ] || step=1
bench_say "load: creating $rules threshold rules on one table (thresholds $step to $((step * rules)))"
BENCH_SQL_TIMEOUT=600 bench_psql -v rules="$rules" -v step="$step" >/dev/null <<'SQL'
CREATE TABLE th_load (
    id     bigserial PRIMARY KEY,
    sensor integer NOT NULL,
    value  double precision NOT NULL
);
SELECT herald.on_threshold(name => 'load-' || k, metric => 'SELECT max(id) FROM th_load',
                           op => '>', threshold => k * :step, channels => ARRAY['bench'],
                           watch => ARRAY['th_load'::regclass], min_interval => '0')
  FROM generate_series(1, :rules) k;
SQL
read -r flushed _ < <(bench_drain 120)
[ "$flushed" = t ] || bench_die "the first evaluations of the $rules rules were not done after 120 s"
bench_psql -c CHECKPOINT

cat >"$BENCH_TMP/load.sql" <<'SQL'
\set sensor random(1, 100)
INSERT INTO th_load (sensor, value) VALUES (:sensor, random());
SQL
rate_args=()
[ "$rate" -eq 0 ] || rate_args=(-R "$rate")
load_jobs=$((load_clients < 2 ? load_clients : 2))
bench_say "load: pgbench -c $load_clients ${rate_args[*]} -T $load_seconds, $rules rules watching"
out=$(BENCH_SQL_TIMEOUT=$((load_seconds + 120)) bench_pgbench -n -c "$load_clients" -j "$load_jobs" \
	"${rate_args[@]}" -T "$load_seconds" -f "$BENCH_TMP/load.sql" 2>&1) ||
	bench_die "pgbench failed: $out"
t_end=$(server_now)
read -r flushed t_done < <(bench_drain 300)
[ "$flushed" = t ] || bench_die "the evaluations of the load run were not done 300 s after it"
catch_up=$(awk -v a="$t_end" -v b="$t_done" 'BEGIN { printf "%.2f", b - a }')
load_tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")

# A sample of the committed rows (about 500,000 (row, rule) pairs in all);
# for each and each rule, the first evaluation whose value (max(id)) is at
# least the row's id.  The value only grows, so that evaluation is the one
# whose value range (previous value, value] holds the id.
sample=$((500000 / rules))
[ "$sample" -le 1000 ] || sample=1000
[ "$sample" -ge 50 ] || sample=50
bench_say "load: computing the lag over a sample of $sample rows and every rule"
BENCH_SQL_TIMEOUT=600 bench_psql -v sample="$sample" >/dev/null <<'SQL'
CREATE TABLE load_window AS
SELECT count(*) AS commits,
       min(pg_xact_commit_timestamp(xmin)) AS first_commit,
       max(pg_xact_commit_timestamp(xmin)) AS last_commit
  FROM th_load;
CREATE TABLE load_sample AS
SELECT id, pg_xact_commit_timestamp(xmin) AS committed
  FROM th_load
 WHERE id % greatest((SELECT commits FROM load_window) / :sample, 1) = 0;
CREATE INDEX ON load_sample (id);
ANALYZE load_sample;
CREATE TABLE load_evals AS
SELECT e.rule, e.evaluated_at, e.value, e.duration_ms,
       coalesce(lag(e.value) OVER (PARTITION BY e.rule ORDER BY e.evaluated_at, e.id), 0) AS prev
  FROM herald.evaluations e
 WHERE e.rule LIKE 'load-%';
ANALYZE load_evals;
CREATE TABLE load_lag AS
SELECT e.rule, s.id, extract(epoch FROM e.evaluated_at - s.committed) * 1000 AS lag_ms
  FROM load_evals e
  JOIN load_sample s ON s.id > e.prev AND s.id <= e.value;
SQL

read -r commits window evals per_rule_min per_rule_med per_rule_max dur_p50 dur_p99 fired < <(
	bench_psql -F ' ' <<'SQL'
WITH w AS (SELECT * FROM load_window),
run AS (
    SELECT e.* FROM load_evals e, w
     WHERE e.evaluated_at BETWEEN w.first_commit AND w.last_commit
), per_rule AS (
    SELECT count(run.rule) AS n
      FROM (SELECT DISTINCT rule FROM load_evals) r LEFT JOIN run ON run.rule = r.rule
     GROUP BY r.rule
)
SELECT w.commits,
       round(extract(epoch FROM w.last_commit - w.first_commit)::numeric, 2),
       (SELECT count(*) FROM run),
       (SELECT min(n) FROM per_rule),
       (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n) FROM per_rule),
       (SELECT max(n) FROM per_rule),
       (SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3) FROM run),
       (SELECT round(percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3) FROM run),
       (SELECT count(*) FROM herald.events ev
         WHERE ev.rule LIKE 'load-%' AND ev.type = 'rule.fired')
  FROM w;
SQL
)
read -r pairs samples lag_p50 lag_p90 lag_p99 lag_max < <(
	bench_psql -F ' ' <<'SQL'
SELECT count(*),
       (SELECT count(*) FROM load_sample),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_ms)::numeric, 1),
       round(percentile_disc(0.9) WITHIN GROUP (ORDER BY lag_ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY lag_ms)::numeric, 1),
       round(max(lag_ms)::numeric, 1)
  FROM load_lag;
SQL
)
[ "$pairs" -eq $((samples * rules)) ] ||
	bench_say "WARNING: $pairs (row, rule) lags measured, $((samples * rules)) expected"

evals_per_s=$(awk -v e="$evals" -v w="$window" 'BEGIN { printf "%.0f", e / w }')
load_rows="measure|value|target|met"
load_rows+=$'\n'"rules watching the table|$rules||"
load_rows+=$'\n'"commits (one row each), achieved TPS|$commits in $window s, $load_tps TPS||"
load_rows+=$'\n'"evaluations while pgbench ran|$evals||"
load_rows+=$'\n'"evaluations/s|$evals_per_s||"
load_rows+=$'\n'"evaluations per rule: min / median / max|$per_rule_min / $per_rule_med / $per_rule_max||"
load_rows+=$'\n'"commits per evaluation of a rule|$(awk -v c="$commits" -v r="$rules" -v e="$evals" 'BEGIN { printf "%.1f", e ? c / (e / r) : 0 }')||"
load_rows+=$'\n'"one evaluation, wall clock (1 / evaluations/s)|$(awk -v e="$evals_per_s" 'BEGIN { printf "%.3f ms", e ? 1000 / e : 0 }')||"
load_rows+=$'\n'"one round of all rules (rules / evaluations/s)|$(awk -v e="$evals_per_s" -v r="$rules" 'BEGIN { printf "%.0f ms", e ? 1000 * r / e : 0 }')||"
load_rows+=$'\n'"metric run time (duration_ms) p50 / p99|$dur_p50 / $dur_p99 ms||"
load_rows+=$'\n'"commit -> evaluation lag p50|$lag_p50 ms||"
load_rows+=$'\n'"commit -> evaluation lag p90|$lag_p90 ms||"
load_rows+=$'\n'"commit -> evaluation lag p99|$lag_p99 ms|<= 1000 ms|$(awk -v p="$lag_p99" 'BEGIN { print (p <= 1000 ? "yes" : "no") }')"
load_rows+=$'\n'"commit -> evaluation lag max|$lag_max ms||"
load_rows+=$'\n'"pgbench stop -> herald.flush() done (catch-up)|$catch_up s||"
load_rows+=$'\n'"rule.fired events (delivered to nginx)|$fired||"

# --- report -------------------------------------------------------------------

{
	echo
	echo "==== thresholds 1/3, write path: pgbench single-row INSERT, $clients clients, ${seconds} s per run, $rounds interleaved rounds ===="
	echo
	bench_table <<<"$write_rows"
	echo
	echo "rule:   metric SELECT max(id) FROM t, op >, threshold 1e15 (never crossed), watch {t}; the"
	echo "        scheduler's evaluations (one transaction and one log row each) of (b) and (b'')"
	echo "        share the cores with pgbench.  Evaluations counted by evaluated_at within the run."
	echo "(b')    the scheduler is stopped with SIGSTOP while it sleeps in its wait, resumed after"
	echo "        the run: what the writers do alone (note the watched table, hand it over at commit)."
	echo "(c)     AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT, PL/pgSQL RETURN NULL:"
	echo "        for reference, what firing any trigger costs."
	echo "scheduler CPU s: user + system time of the scheduler process during the run (/proc);"
	echo "        wake-ups per commit: its voluntary context switches during the run / commits."
	echo "        Medians over the rounds."
	echo "load:   pgbench -n -c $clients -j $clients -T $seconds, INSERT INTO t (customer, amount) VALUES (...),"
	echo "        autocommit; the tables are identical (bigserial key, text, numeric, timestamptz default)."
	echo
	echo "==== thresholds 2/3, commit -> rule.fired received by nginx, min_interval 0, $flips fire/resolve flips ===="
	echo
	bench_table <<<"$flip_rows"
	echo
	echo "rule:     metric SELECT v FROM gauge ORDER BY id DESC LIMIT 1, op >, threshold 0; flip k"
	echo "          inserts v = k (fires), then v = -k (resolves), each committed alone and awaited"
	echo "          with herald.flush() before the next: one evaluation per commit, nothing else runs."
	echo "latency:  nginx's receipt time (\$msec logged with the webhook-id header, + 0.5 ms: +-0.5 ms)"
	echo "          - the write's commit timestamp (track_commit_timestamp); the event is matched to its"
	echo "          write by value, the request to the delivery by herald.webhook_id()."
	echo "          evaluation started: evaluated_at, now() of the evaluation's transaction."
	echo
	echo "==== thresholds 3/3, $rules threshold rules on one table under pgbench load ===="
	echo
	bench_table <<<"$load_rows"
	echo
	echo "rules:  load-k: metric SELECT max(id) FROM t (primary key), op >, threshold k * $step,"
	echo "        min_interval 0, watch {t}, one webhook channel to nginx."
	echo "load:   pgbench -n -c $load_clients -j $load_jobs${rate_args[*]:+ ${rate_args[*]}} -T $load_seconds, INSERT INTO t (sensor, value) VALUES (...)."
	echo "lag:    for $samples rows (every n-th id) and each of the $rules rules, evaluated_at of the"
	echo "        rule's first evaluation whose value (max(id)) is >= the row's id - the row's commit"
	echo "        timestamp ($pairs pairs).  evaluated_at is taken when the evaluation's transaction"
	echo "        starts, just before the metric runs."
	echo "window: first to last commit of the run; evaluations counted by evaluated_at within it."
	echo
	if [ "$durable" = 1 ]; then
		echo "cluster: scripts/cluster.sh defaults but fsync = on, synchronous_commit = on (durable"
		echo "        commits), track_commit_timestamp = on; one delivery worker, one scheduler."
	else
		echo "cluster: scripts/cluster.sh defaults (fsync = off: commits are cheap, which makes any"
		echo "        trigger's relative cost larger) + track_commit_timestamp = on; one delivery worker,"
		echo "        one scheduler."
	fi
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
