#!/usr/bin/env bash
# The test suite on other PostgreSQL versions (test/run --pg VERSION).
#
#   bash scripts/matrix.sh 17|18|18-assert|18-asan|upgrade|all
#   bash scripts/matrix.sh 15,17,18        a comma-separated list, in order
#
# For 17, 18, 18-assert and 18-asan: makes or reuses the Debian root of that version
# (scripts/pgroot.sh), copies this working tree into /build/pg_herald-VERSION
# inside it (what is built there stays there), and runs test/run there as
# root; 18-assert and 18-asan put their build first on PATH.  In the 17 root,
# pg_herald is also built for the copy of the host's PostgreSQL 15 there,
# and t/014_pg_upgrade.pl upgrades a 15 cluster to 17 with pg_upgrade;
# "upgrade" runs only that test.  "all" runs the host's PostgreSQL 15
# first, then 17 (the upgrade test included), 18 and 18-assert.
#
# Each version's output is shown as it runs, under a "==== PostgreSQL V
# ====" heading; a version whose run ends without its "N passed, N failed"
# line counts as one failure.  The last line adds up every version, and
# the lines before it list them with the time each took; before those, the
# tests that failed on each version are listed again, with the start of
# their diffs and logs.  With several
# versions, the roots of the later ones are made while the first run.  CI, HERALD_ONLY and
# HERALD_KEEP_TMP reach the inner runs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

versions=()
case "${1:-}" in
	all) versions=(15 17 18 18-assert) ;;
	*)
		IFS=, read -r -a listed <<<"${1:-}"
		for v in "${listed[@]}"; do
			case "$v" in
				15 | 17 | 18 | 18-assert | 18-asan | upgrade) versions+=("$v") ;;
				*)
					echo "matrix.sh: unknown PostgreSQL version '$v' (15, 17, 18, 18-assert, 18-asan, upgrade, a comma-separated list of them, or all)" >&2
					exit 2
					;;
			esac
		done
		;;
esac
if [ ${#versions[@]} -eq 0 ]; then
	echo "matrix.sh: no PostgreSQL version given (15, 17, 18, 18-assert, a list such as 15,17,18, or all)" >&2
	exit 2
fi

passed=0
failed=0
summary=()
failures=()
failed_versions=()

# The root (scripts/pgroot.sh's version) a version of this list runs in.
root_of() {
	case "$1" in
		upgrade) echo 17 ;;
		*) echo "$1" ;;
	esac
}

# Copy the working tree, with the browser test's node_modules (installed
# here first: the roots have no npm) but without build products (the
# fuzzing harnesses' included) or git data, into DEST.
copy_tree() {
	local dest=$1
	rm -rf "$dest"
	mkdir -p "$dest"
	tar -C "$repo" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./test/fuzz/build -cf - . | tar -C "$dest" -xf -
}

# With several versions, their roots are made in the background while the
# first versions run (pgroot.sh makes each once; a later call waits for it).
prepare=
if [ ${#versions[@]} -gt 1 ]; then
	prepare_log=$(mktemp "${TMPDIR:-/tmp}/pg_herald_roots.XXXXXX")
	(
		for v in "${versions[@]}"; do
			[ "$v" = 15 ] || bash "$repo/scripts/pgroot.sh" "$(root_of "$v")" >/dev/null || true
		done
	) >"$prepare_log" 2>&1 &
	prepare=$!
	trap 'kill "$prepare" 2>/dev/null || true; rm -f "$prepare_log"' EXIT
fi

[ "${versions[*]}" = 15 ] || bash "$repo/scripts/deps.sh" --browser

for v in "${versions[@]}"; do
	echo
	echo "==== PostgreSQL $v ===="
	started=$SECONDS
	out=$(mktemp "${TMPDIR:-/tmp}/pg_herald_matrix.XXXXXX")
	set +e
	if [ "$v" = 15 ]; then
		bash "$repo/test/run" 2>&1 | tee "$out"
	else
		only=${HERALD_ONLY:-}
		old_pg_config=
		if [ "$(root_of "$v")" = 17 ]; then
			old_pg_config=/opt/pg15/usr/lib/postgresql/15/bin/pg_config
		fi
		[ "$v" = upgrade ] && only=014_pg_upgrade
		root=$(bash "$repo/scripts/pgroot.sh" "$(root_of "$v")") &&
			copy_tree "$root/build/pg_herald-$v" &&
			asan=
			if [ "$v" = 18-asan ]; then
				# PostgreSQL's programs leave their memory to their exit
				asan=detect_leaks=0
			fi &&
			if [ "$v" = 18-assert ] || [ "$v" = 18-asan ]; then
				path=/opt/pg$v/bin:/usr/sbin:/usr/bin:/sbin:/bin
				major=source
			else
				path=/usr/sbin:/usr/bin:/sbin:/bin
				major=$(root_of "$v")
				major=${major%%-*}
			fi &&
			bash "$repo/scripts/pgroot.sh" "$(root_of "$v")" -- /usr/bin/env PATH="$path" TMPDIR=/tmp ASAN_OPTIONS="$asan" \
				HERALD_PG_MAJOR="$major" CI="${CI:-}" HERALD_ONLY="$only" \
				HERALD_KEEP_TMP="${HERALD_KEEP_TMP:-}" HERALD_OLD_PG_CONFIG="$old_pg_config" \
				bash "/build/pg_herald-$v/test/run" 2>&1 | tee "$out"
	fi
	set -e
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
	# what failed, to be shown again after the last version: the failed
	# tests' lines and TAP's diagnostics, then the start of the diffs and
	# logs test/run printed
	{
		grep -E -e '^not ok' -e '^test/t/.*: [0-9]+ passed, [1-9][0-9]* failed' \
			-e '^#   ' -e '^fuzz [^ ]*: FAILED' -e '^test/run: ' "$out" | head -n 60 || true
		sed -n '/^======== /,$p' "$out" | grep -E -v '^[0-9]+ passed, [0-9]+ failed$' | head -n 150 || true
	} >"$out.failed"
	rm -f "$out"
	if [ -n "$line" ]; then
		read -r p _ f _ <<<"$line"
	else
		echo "matrix.sh: PostgreSQL $v ended without a result line" >&2
		p=0
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	summary+=("$v: $p passed, $f failed ($((SECONDS - started)) s)")
	if [ "$f" -gt 0 ] && [ -s "$out.failed" ]; then
		failures+=("$out.failed")
		failed_versions+=("$v")
	else
		rm -f "$out.failed"
	fi
done

# The failures again, so that the end of a long run shows them.
for i in "${!failures[@]}"; do
	echo
	echo "==== what failed on PostgreSQL ${failed_versions[$i]} ===="
	cat "${failures[$i]}"
	rm -f "${failures[$i]}"
done
echo
for s in "${summary[@]}"; do
	echo "PostgreSQL $s"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ $((passed + failed)) -gt 0 ]
