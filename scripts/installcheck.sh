#!/usr/bin/env bash
# What `make installcheck` needs around the server, then the command:
#
#   bash scripts/installcheck.sh DATABASE CMD...
#
# 1. checks the server that psql reaches (PGHOST, PGPORT, PGUSER...): it
#    answers, pg_herald is in shared_preload_libraries, herald.database is
#    DATABASE and exists, and the user is a superuser (the tests read the
#    receivers' logs with pg_read_file and run test/verify_signature.py
#    with COPY FROM PROGRAM); the server must run on this machine;
# 2. starts the local HTTP and SMTP receivers and copies test/ where the
#    server's user can read it (herald_test_env_start in scripts/cluster.sh),
#    exporting HERALD_RECEIVER_URL, HERALD_RECEIVER_LOG, HERALD_SMTP_URL,
#    HERALD_SMTP_LOG and HERALD_TEST_DIR;
# 3. runs CMD, stops the receivers, removes their directory and exits with
#    CMD's status.
#
# Environment: HERALD_KEEP_TMP=1 keeps the receivers' directory.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: bash scripts/installcheck.sh DATABASE CMD..." >&2
	exit 2
fi
db=$1
shift

# shellcheck source=scripts/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

fail() {
	echo "make installcheck: $*" >&2
	echo "make installcheck: the server needs shared_preload_libraries = 'pg_herald' and" \
		"herald.database = '$db' (a restart), database \"$db\" and a superuser;" \
		"see \"Tests\" in README.md" >&2
	exit 1
}

psql=$(herald_pg_bindir)/psql
q() {
	"$psql" -X -A -t -v ON_ERROR_STOP=1 -d "$db" -c "$1" 2>&1
}
if ! out=$("$psql" -X -A -t -d postgres -c 'SELECT 1' 2>&1); then
	fail "cannot connect to the server (PGHOST=${PGHOST:-} PGPORT=${PGPORT:-}): $out"
fi
preload=$("$psql" -X -A -t -d postgres -c 'SHOW shared_preload_libraries')
if [[ ",${preload// /}," != *,pg_herald,* ]]; then
	fail "pg_herald is not in shared_preload_libraries (it is '$preload')"
fi
served=$("$psql" -X -A -t -d postgres -c 'SHOW herald.database')
if [ "$served" != "$db" ]; then
	fail "herald.database is '$served', the tests run in \"$db\"" \
		"(or make installcheck HERALD_DB=$served)"
fi
if ! out=$(q 'SELECT 1'); then
	fail "cannot connect to database \"$db\": $out"
fi
if [ "$(q 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user')" != t ]; then
	fail "user \"$(q 'SELECT current_user')\" is not a superuser"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pg_herald_installcheck.XXXXXX")
chmod 755 "$tmp"
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
	herald_receiver_stop
	herald_smtp_stop
	if [ "${HERALD_KEEP_TMP:-}" = 1 ]; then
		echo "make installcheck: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
herald_test_env_start "$tmp"

set +e
"$@"
rc=$?
set -e
exit "$rc"
