#!/usr/bin/env bash
# Decisions from links: how many decision forms per second the HTTP worker
# records, the latency of one POST under load, and what that load costs the
# deliveries.
#
#   bash bench/decisions.sh [--seconds 10] [--connections 50] [--events 20000]
#                           [--paced-rate 100] [--rounds 3] [--timeout 120]
#
# One cluster with herald.http_listen on a free port of 127.0.0.1 and
# herald.http_rate_limit = 0 (no per-address limit: every request comes from
# 127.0.0.1, as from a reverse proxy), nginx ("return 204") receiving the
# webhooks.
#   1. Forms: a row rule with 10 choices fires 100 events; herald._link()
#      and herald._form_token() (what the delivery worker and the page use)
#      make a pool of distinct valid (link, form token, action) triples, one
#      per decision to record.
#   2. Decisions: wrk -t1 -cC POSTs them to /d/{token} for --seconds, each
#      form once (never an "already recorded" answer); requests/s and the
#      latency percentiles are wrk's, and the rows in herald.decision_log
#      are counted afterwards (wrk does not count the requests it cut at the
#      end: up to C more rows than answers).
#   3. Deliveries: N webhooks queued in one transaction and drained (as in
#      bench/throughput.sh: COMMIT -> herald.flush() true), --rounds times
#      each of: alone, while wrk keeps C connections posting decisions at
#      about --paced-rate per second in all, and while it posts as fast as it
#      can, interleaved so that a neighbour's load falls on all three.
#      Ratio = the median deliveries/s with the load / the median alone.
#      The decided rule has announce_decisions off,
#      so the drains send the same deliveries (an announced decision is one
#      more delivery per channel, costing what any delivery costs).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=10
connections=50
events=20000
paced_rate=100
rounds=3
drain_timeout=120

usage() {
	bench_usage 2,7 "${1:-0}"
}
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--seconds) seconds=$2; shift 2 ;;
		--connections) connections=$2; shift 2 ;;
		--events) events=$2; shift 2 ;;
		--paced-rate) paced_rate=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--timeout) drain_timeout=$2; shift 2 ;;
		-h | --help) usage 0 ;;
		*) echo "decisions.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
done
bench_positive_ints "$seconds" "$connections" "$events" "$paced_rate" "$rounds" "$drain_timeout"
[ "$connections" -le 200 ] || bench_die "--connections at most 200 (the HTTP worker serves 256)"

bench_init decisions "${args[@]}"
bench_nginx_start
bench_say "nginx on $BENCH_NGINX_URL"

http_port=$(herald_free_port)
public="http://127.0.0.1:$http_port"
herald_cluster_start "$BENCH_TMP/pg" "herald.http_listen = '127.0.0.1:$http_port'" \
	"herald.http_rate_limit = 0" >&2
delivery_pid=$(bench_wait_worker)
http_pid=$(bench_wait_worker "pg_herald http")
[ "$(bench_psql -c 'SHOW herald.http_rate_limit')" = 0 ] || bench_die "herald.http_rate_limit is not 0"

choices="ARRAY['choice 1', 'choice 2', 'choice 3', 'choice 4', 'choice 5', 'choice 6', 'choice 7', 'choice 8', 'choice 9', 'choice 10']"
bench_psql -v url="$BENCH_NGINX_URL" >/dev/null <<SQL
CREATE EXTENSION pg_herald;
$(bench_orders_table orders)
CREATE TABLE asks (id int PRIMARY KEY, what text NOT NULL);
SELECT herald.create_channel(name => 'bench', kind => 'webhook', target => :'url' || '/bench');
SELECT herald.on_change(name => 'bench', on_table => 'orders', channels => ARRAY['bench'],
                        operations => ARRAY['INSERT']);
SELECT herald.create_channel(name => 'asks', kind => 'webhook', target => :'url' || '/asks');
SELECT herald.on_change(name => 'ask', on_table => 'asks', channels => ARRAY['asks'],
                        operations => ARRAY['INSERT'], choices => $choices,
                        announce_decisions => false);
INSERT INTO asks SELECT g, 'question ' || g FROM generate_series(1, 100) g;
-- warm-up: one order through the whole path
INSERT INTO orders (customer, amount) VALUES ('customer 1', 123.45);
DO \$\$BEGIN
    IF NOT herald.flush('30 seconds') THEN
        RAISE EXCEPTION 'the warm-up deliveries did not finish within 30 s';
    END IF;
END\$\$;
SQL

status=
for _ in $(seq 100); do
	status=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$public/d/x" || true)
	[ "$status" = 000 ] || [ "$status" = 503 ] || break
	sleep 0.1
done
[ "$status" = 403 ] || bench_die "the HTTP worker answered $status to a malformed link, not 403"
bench_say "HTTP worker on $public"

# A pool of distinct valid forms: "path TAB form token TAB action" lines.
# Links to the 100 events, their 10 actions, one recipient each (the
# recipient a link names is who decides); each form token is made as the
# page makes it, so each POST is a first submission.
make_pool() {
	local file=$1 count=$2 offset=$3
	BENCH_SQL_TIMEOUT=300 bench_psql -v count="$count" -v offset="$offset" >"$file" <<'SQL'
COPY (
    SELECT '/d/' || l.token, herald._form_token(l.token, extract(epoch FROM now())::bigint), l.action
      FROM (SELECT substring(herald._link(k.id, k.secret, e.id, 1 + g % 10, c.id,
                                          'person-' || (:offset + g) || '@example.com')
                             FROM '/d/([A-Za-z0-9_-]+)$') AS token,
                   1 + g % 10 AS action
              FROM generate_series(0, :count - 1) g
              JOIN herald.event_log e ON e.rule = 'ask' AND e.payload -> 'new' ->> 'id' = (1 + (g / 10) % 100)::text
              CROSS JOIN (SELECT id, secret FROM herald.link_keys
                           WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1) k
              CROSS JOIN (SELECT id FROM herald.channel_defs WHERE name = 'asks') c) l
) TO STDOUT
SQL
	[ "$(wc -l <"$file")" -eq "$count" ] || bench_die "the pool $file has $(wc -l <"$file") forms, not $count"
}

# wrk's script: each request takes the next form of the pool (and after the
# last one starts over: then the answers say "already recorded" and record
# nothing, which the row count shows).  DELAY_MS > 0 paces each connection.
write_lua() {
	local lua=$1 pool=$2 delay_ms=$3
	cat >"$lua" <<LUA
local pool = {}
for line in io.lines("$pool") do
	pool[#pool + 1] = line
end
local i = 0
request = function()
	i = i + 1
	local path, form, action = pool[(i - 1) % #pool + 1]:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
	return wrk.format("POST", path,
		{ ["Content-Type"] = "application/x-www-form-urlencoded" },
		"form=" .. form .. "&action=" .. action .. "&said=bench+decision")
end
LUA
	if [ "$delay_ms" -gt 0 ]; then
		echo "delay = function() return $delay_ms end" >>"$lua"
	fi
}

decisions_recorded() {
	bench_psql -c "SELECT count(*) FROM herald.decision_log WHERE identified_by = 'link'"
}

# wrk's latency ("12.34ms", "980.00us", "1.02s") in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
		else print "?" }'
}

# ---- 2. decisions per second ----
# The pool must outlast wrk: sized for 5,000 decisions a second.
pool_max=$((seconds * 5000))
bench_say "making $pool_max forms"
make_pool "$BENCH_TMP/pool_max.txt" "$pool_max" 0
write_lua "$BENCH_TMP/max.lua" "$BENCH_TMP/pool_max.txt" 0
before=$(decisions_recorded)
read -r http_cpu0 _ < <(bench_proc_usage "$http_pid")
bench_say "wrk -t1 -c$connections -d${seconds}s: POST decision forms"
out=$(timeout $((seconds + 60)) wrk -t1 -c"$connections" -d"${seconds}s" --timeout 10s --latency \
	-s "$BENCH_TMP/max.lua" "$public") || bench_die "wrk failed: $out"
after=$(decisions_recorded)
read -r http_cpu1 _ < <(bench_proc_usage "$http_pid")
requests=$(awk '/requests in/ { print $1 }' <<<"$out")
rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
sock_errors=$(awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print }' <<<"$out")
p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
p90=$(to_ms "$(awk '$1 == "90%" { print $2 }' <<<"$out")")
p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
recorded=$((after - before))
http_us=$(awk -v a="$http_cpu0" -v b="$http_cpu1" -v n="$recorded" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1e6 / n; else print "-" }')
if [ -z "$requests" ] || [ -z "$rps" ]; then
	bench_die "could not read wrk's output: $out"
fi
[ "$requests" -le "$pool_max" ] || bench_say "WARNING: wrk sent $requests forms, more than the pool's $pool_max"
bench_say "$requests answers ($rps/s), $recorded decisions recorded, p99 $p99 ms"

# ---- 3. deliveries with and without decisions coming in ----
pace_ms=$((connections * 1000 / paced_rate))
# the full load's pool: 30 s at the rate just measured
pool_drain=$((rps * 30))
[ "$pool_drain" -ge 1000 ] || pool_drain=1000
[ "$pool_drain" -le 300000 ] || pool_drain=300000
rows="run|decision load|deliveries|drain s|deliveries/s|delivery worker CPU us/delivery|decisions recorded meanwhile|decisions/s meanwhile"
rates_none=()
rates_paced=()
rates_full=()
cpu_none=()
cpu_paced=()
cpu_full=()
loads=()
for _ in $(seq "$rounds"); do
	loads+=(none paced full)
done
run=0
for load in "${loads[@]}"; do
	run=$((run + 1))
	wrk_pid=
	last_id=$(bench_psql -c "SELECT coalesce(max(id), 0) FROM herald.deliveries")
	if [ "$load" != none ]; then
		pool="$BENCH_TMP/pool_$run.txt"
		if [ "$load" = paced ]; then
			make_pool "$pool" $((paced_rate * (drain_timeout + 10))) $((run * 1000000))
			write_lua "$BENCH_TMP/run_$run.lua" "$pool" "$pace_ms"
		else
			make_pool "$pool" "$pool_drain" $((run * 1000000))
			write_lua "$BENCH_TMP/run_$run.lua" "$pool" 0
		fi
		bench_bg $((drain_timeout + 30)) wrk -t1 -c"$connections" -d"$((drain_timeout + 20))s" \
			--timeout 10s -s "$BENCH_TMP/run_$run.lua" "$public" >"$BENCH_TMP/wrk_$run.out" 2>&1
		wrk_pid=$BENCH_BG_PID
		sleep 1 # the load is steady before the COMMIT
	fi
	bench_say "run $run ($load decision load): inserting $events orders, then draining"
	read -r cpu0 _ < <(bench_proc_usage "$delivery_pid")
	read -r t_commit < <(BENCH_SQL_TIMEOUT=300 bench_psql -v n="$events" <<'SQL'
BEGIN;
INSERT INTO orders (customer, amount)
SELECT 'customer ' || (g % 1000), (g % 100000) / 100.0 FROM generate_series(1, :n) AS g;
SELECT extract(epoch FROM clock_timestamp()) AS t_commit \gset
COMMIT;
SELECT :t_commit;
SQL
	)
	read -r flushed t_done < <(bench_drain "$drain_timeout")
	read -r cpu1 _ < <(bench_proc_usage "$delivery_pid")
	if [ -n "$wrk_pid" ]; then
		herald_stop_pid "$wrk_pid"
	fi
	read -r delivered made < <(bench_psql -F ' ' -v last="$last_id" -v t0="$t_commit" -v t1="$t_done" <<'SQL'
SELECT (SELECT count(*) FROM herald.deliveries d
         WHERE d.id > :last AND d.channel = 'bench' AND d.status = 'delivered'),
       (SELECT count(*) FROM herald.decision_log x
         WHERE x.identified_by = 'link'
           AND x.decided_at BETWEEN to_timestamp(:t0) AND to_timestamp(:t1));
SQL
	)
	read -r drain_s rate made_rate < <(awk -v c="$t_commit" -v d="$t_done" -v n="$delivered" -v m="$made" \
		'BEGIN { printf "%.2f %.0f %.0f\n", d - c, n / (d - c), m / (d - c) }')
	[ "$flushed" = t ] || drain_s=">$drain_s (gave up)"
	cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$delivered" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }')
	case $load in
		none) rates_none+=("$rate"); cpu_none+=("$cpu_us") ;;
		paced) rates_paced+=("$rate"); cpu_paced+=("$cpu_us") ;;
		full) rates_full+=("$rate"); cpu_full+=("$cpu_us") ;;
	esac
	rows+=$'\n'"$run|$load|$delivered|$drain_s|$rate|$cpu_us|$made|$made_rate"
	bench_say "run $run: $delivered delivered in $drain_s s = $rate/s; $made decisions recorded meanwhile"
done
median_none=$(bench_median "${rates_none[@]}")
median_paced=$(bench_median "${rates_paced[@]}")
median_full=$(bench_median "${rates_full[@]}")
ratio() {
	awk -v a="$1" -v b="$median_none" 'BEGIN { printf "%.3f", a / b }'
}
cpu_med_none=$(bench_median "${cpu_none[@]}")
cpu_ratio() {
	awk -v a="$(bench_median "$@")" -v b="$cpu_med_none" 'BEGIN { printf "%.0f|%.3f", a, a / b }'
}
summary="decision load|median deliveries/s|ratio to alone|runs (deliveries/s)|median CPU us/delivery|ratio to alone"
summary+=$'\n'"none|$median_none|1.000|${rates_none[*]}|$cpu_med_none|1.000"
summary+=$'\n'"paced (about $paced_rate/s)|$median_paced|$(ratio "$median_paced")|${rates_paced[*]}|$(cpu_ratio "${cpu_paced[@]}")"
summary+=$'\n'"full|$median_full|$(ratio "$median_full")|${rates_full[*]}|$(cpu_ratio "${cpu_full[@]}")"
paced_label="paced: $connections connections, one POST each per $pace_ms ms after the answer"

{
	echo
	echo "==== decisions: POSTs of decision forms to the HTTP worker on 127.0.0.1 ===="
	echo
	bench_table <<<"client|answers|seconds|answers/s|decisions recorded|non-2xx|p50 ms|p90 ms|p99 ms"$'\n'"wrk -t1 -c$connections|$requests|$seconds|$rps|$recorded|${non2xx:-0}|$p50|$p90|$p99"
	echo
	echo "socket errors: ${sock_errors:-none}"
	echo "HTTP worker CPU (user + system) per recorded decision: $http_us us"
	echo "each POST: /d/{token} with a distinct valid form (form, action of 10, said), one per"
	echo "           recorded decision; decisions recorded = new herald.decision_log rows, which"
	echo "           includes the requests wrk cut at the end (it does not count them)."
	echo
	echo "==== deliveries while decisions come in: draining $events queued webhooks to nginx ===="
	echo
	bench_table <<<"$summary"
	echo
	bench_table <<<"$rows"
	echo
	echo "drain s:   COMMIT of $events orders (a row rule, one webhook each) -> herald.flush('1 second'),"
	echo "           called in a loop, returned true (as bench/throughput.sh)."
	echo "load:      none; $paced_label"
	echo "           (about $paced_rate/s in all); full: $connections connections as fast as they are answered."
	echo "           wrk, the HTTP worker, the delivery worker, nginx and PostgreSQL share the cores."
	echo "ratio:     median deliveries/s with that load / median without; runs interleaved."
	echo "CPU us/delivery: the delivery worker's CPU time (user + system, /proc) over the drain"
	echo "           / deliveries: its own cost, which other processes' load on the cores leaves"
	echo "           alone, unlike deliveries/s."
	echo "cluster:   scripts/cluster.sh defaults (fsync = off), herald.http_rate_limit = 0."
	echo "server log ERROR/FATAL/PANIC/WARNING lines: $(bench_server_log_summary)"
	bench_machine
} | bench_report
