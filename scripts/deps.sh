#!/usr/bin/env bash
# Install the Debian packages needed to build and test pg_herald.
#
#   bash scripts/deps.sh           build and test dependencies
#   bash scripts/deps.sh --bench   also what the benchmarks use
#
# Idempotent: packages already installed are left alone, and apt-get is only
# run when something is missing.  Installing needs root; without root the
# script lists what is missing and fails.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libmicrohttpd-dev
	pkg-config libipc-run-perl python3 python3-aiosmtpd make gcc)

for arg in "$@"; do
	case "$arg" in
		--bench) packages+=(nginx-light wrk) ;;
		-h | --help)
			sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
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

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages: ${missing[*]}" >&2
	echo "deps.sh: install them as root: apt-get install ${missing[*]}" >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
