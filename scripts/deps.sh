#!/usr/bin/env bash
# Install the Debian packages needed to build and test pg_herald.
#
#   bash scripts/deps.sh           build and test dependencies
#   bash scripts/deps.sh --bench   also what the benchmarks use
#
#   bash scripts/deps.sh --browser only node and test/browser/node_modules
#
# HERALD_PG_MAJOR=17 installs PostgreSQL 17's packages instead of 15's.
#
# Idempotent: packages already installed are left alone, and apt-get is only
# run when something is missing.  Installing needs root; without root the
# script lists what is missing and fails.
#
# The browser tests (test/t/031_browser.pl, 032_cards.pl) drive Debian's chromium with
# npm's playwright-core and adaptivecards, pinned in test/browser/package-lock.json and
# installed into test/browser/node_modules by "npm ci" (again only when the
# lock file changed).  Node.js and npm come from Debian (nodejs 18) unless
# a node and an npm are already on PATH.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# HERALD_PG_MAJOR names the PostgreSQL packages (default 15, the host's);
# "source" means a PostgreSQL built from source is first on PATH, and no
# server package is installed (scripts/matrix.sh sets it in its roots).
major=${HERALD_PG_MAJOR:-15}
packages=(libcurl4-openssl-dev libmicrohttpd-dev libnats-dev libssl-dev
	pkg-config libipc-run-perl python3 python3-aiosmtpd make gcc
	chromium fonts-liberation nats-server openssl)
if [ "$major" != source ]; then
	packages+=("postgresql-$major" "postgresql-server-dev-$major")
fi
# the fuzzing harnesses (test/fuzz), built on the host's PostgreSQL 15 only
if [ "$major" = 15 ]; then
	packages+=(clang-14 libclang-rt-14-dev lld-14)
fi
# another node (e.g. a newer one installed by hand) is fine too; npm only
# when test/browser/node_modules is not installed from its lock file yet
# (scripts/matrix.sh copies the host's into its roots, which need no npm)
browser=$repo/test/browser
stamp=$browser/node_modules/.herald-package-lock.json
need_npm=0
cmp -s "$browser/package-lock.json" "$stamp" 2>/dev/null || need_npm=1
command -v node >/dev/null || packages+=(nodejs)
[ "$need_npm" = 0 ] || command -v npm >/dev/null || packages+=(npm)

for arg in "$@"; do
	case "$arg" in
		--bench) packages+=(nginx-light wrk valgrind curl) ;;
		--browser)
			# only what the browser test needs on this machine
			packages=()
			command -v node >/dev/null || packages+=(nodejs)
			[ "$need_npm" = 0 ] || command -v npm >/dev/null || packages+=(npm)
			;;
		-h | --help)
			sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
			exit 0
			;;
		*)
			echo "deps.sh: unknown argument: $arg" >&2
			exit 2
			;;
	esac
done

missing=()
for pkg in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "installed" ]; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps.sh: missing packages: ${missing[*]}" >&2
		echo "deps.sh: install them as root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}"
	# scripts/pgroot.sh may be installing debootstrap at the same time (test/run
	# --pg all makes the roots while 15 runs): the two take turns on one lock,
	# and wait for any other apt (unattended upgrades) rather than fail.
	flock /run/lock/pg_herald-apt.lock sh -c '
		apt-get -o DPkg::Lock::Timeout=600 update &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
			install -y --no-install-recommends "$@"' apt "${missing[@]}"
fi

# playwright-core for the browser test: "npm ci" when node_modules was not
# installed from this very lock file (a copy of it is kept as the stamp).
if [ "$need_npm" = 1 ]; then
	echo "deps.sh: npm ci --prefix test/browser"
	rm -f "$stamp"
	npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >&2
	cp "$browser/package-lock.json" "$stamp"
fi
