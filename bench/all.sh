#!/usr/bin/env bash
# Every pg_herald benchmark with its default sizes, one after the other, then
# all their tables together.  Run as root from anywhere:
#
#   bash bench/all.sh
#
# Progress goes to stderr while they run; the tables come at the end, on
# stdout.  To keep a record:  bash bench/all.sh 2>&1 | tee bench/results/latest.txt
#
# About 32 minutes on 2 cores.  memory.sh gets a 7-minute drain budget here
# instead of its own 15, so that the whole run stays within about 32 minutes
# even when the drain is slow (it then reports that it gave up).  Each
# benchmark is also killed after a hard limit; a failed or killed one is
# reported and the others still run.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

report=$(mktemp /tmp/pg_herald_bench_all.XXXXXX)
trap 'rm -f "$report"' EXIT
export BENCH_REPORT=$report

# name, hard limit in seconds, arguments
runs=(
	"throughput 600"
	"latency 300"
	"write_path 900"
	"capture_instructions 600"
	"memory 600 --timeout 420"
	"snapshot 600"
	"thresholds 600"
	"slow_metric 400"
	"decisions 400"
)

started=$(date +%s)
failed=()
for run in "${runs[@]}"; do
	read -r name limit args <<<"$run"
	echo "==== bash bench/$name.sh${args:+ $args} ====" >&2
	rc=0
	# shellcheck disable=SC2086
	timeout --kill-after=60 "$limit" bash "$bench_dir/$name.sh" $args >/dev/null || rc=$?
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -ne 124 ] || echo "all.sh: $name.sh was stopped after $limit s" >&2
		failed+=("$name.sh (exit $rc)")
	fi
done

echo
echo "######## pg_herald benchmarks: bash bench/all.sh, $((($(date +%s) - started) / 60)) min $((($(date +%s) - started) % 60)) s ########"
cat "$report"
echo
if [ ${#failed[@]} -eq 0 ]; then
	echo "all.sh: ${#runs[@]} benchmarks ran"
else
	echo "all.sh: failed or incomplete: ${failed[*]}"
	exit 1
fi
