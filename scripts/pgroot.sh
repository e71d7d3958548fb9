#!/usr/bin/env bash
# A Debian root with another PostgreSQL, to build and test pg_herald there.
#
#   bash scripts/pgroot.sh VERSION            make (or reuse) the root, print its path
#   bash scripts/pgroot.sh VERSION -- CMD...  run CMD inside it, as root
#
# VERSION is 17 (Debian 13 "trixie", postgresql-17), 18 (Debian "sid",
# postgresql-18) or 18-assert (the same root, plus PostgreSQL 18 built from
# Debian's source package with --enable-cassert --enable-debug, installed in
# /opt/pg18-assert inside it).  15 is the host's own PostgreSQL and needs no
# root.
#
# Roots are made with debootstrap --variant=minbase under
# $HERALD_ROOT_CACHE (default /var/cache/pg_herald/roots), one per Debian
# release, and reused while their stamp (the release, the package list and
# this script's recipe version) matches; otherwise they are made again.
# Needs root, debootstrap (installed when missing) and Debian's archive.
# Two callers for one root take turns (flock): the second finds it made.
#
# CMD runs in a private mount namespace (unshare -m) with /proc, /sys and
# /dev mounted inside the root, so nothing stays mounted when it ends, even
# when it fails.  The network namespace is the host's: loopback services
# inside and outside the root see each other.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${HERALD_ROOT_CACHE:-/var/cache/pg_herald/roots}
mirror=${HERALD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Bump when the recipe below changes, so that cached roots are made again.
recipe=2

usage() {
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

[ $# -ge 1 ] || usage
version=$1
shift
case "$version" in
	17) suite=trixie major=17 assert=0 ;;
	18) suite=sid major=18 assert=0 ;;
	18-assert) suite=sid major=18 assert=1 ;;
	-h | --help) usage ;;
	*)
		echo "pgroot.sh: unknown version '$version' (17, 18 or 18-assert)" >&2
		exit 2
		;;
esac
if [ "$(id -u)" -ne 0 ]; then
	echo "pgroot.sh: must run as root (debootstrap, chroot)" >&2
	exit 1
fi

root=$cache/$suite
log=$cache/$suite.log

# What the suite needs inside the root, as scripts/deps.sh lists for the
# host (but npm: scripts/matrix.sh copies the host's node_modules), plus
# what building PostgreSQL from source takes (for 18-assert).
packages="postgresql-$major postgresql-server-dev-$major libcurl4-openssl-dev libmicrohttpd-dev"
packages+=" pkg-config libipc-run-perl python3 python3-aiosmtpd make gcc chromium fonts-liberation"
packages+=" nodejs ca-certificates"
build_packages="dpkg-dev bison flex zlib1g-dev libssl-dev libicu-dev liblz4-dev libzstd-dev perl"
stamp="recipe=$recipe suite=$suite packages=$packages $build_packages"

# Run CMD inside ROOT with the pseudo file systems mounted (private mounts).
in_root() {
	local dir=$1
	shift
	unshare --mount --propagation private -- /bin/sh -c '
		dir=$1; shift
		mount -t proc proc "$dir/proc"
		mount -t sysfs sysfs "$dir/sys"
		mount --rbind /dev "$dir/dev"
		exec chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			TERM="${TERM:-dumb}" "$@"' sh "$dir" "$@"
}

make_root() {
	local new=$root.new
	echo "pgroot.sh: making the $suite root in $root (log: $log)" >&2
	mkdir -p "$cache"
	rm -rf "$new"
	: >"$log"
	if ! command -v debootstrap >/dev/null; then
		# the host's apt, in turns with scripts/deps.sh (same lock)
		flock /run/lock/pg_herald-apt.lock sh -c '
			apt-get -o DPkg::Lock::Timeout=600 update &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
				install -y debootstrap' >>"$log" 2>&1
	fi
	if ! debootstrap --variant=minbase "$suite" "$new" "$mirror" >>"$log" 2>&1; then
		tail -n 30 "$log" >&2
		echo "pgroot.sh: debootstrap $suite failed" >&2
		return 1
	fi
	cp /etc/resolv.conf "$new/etc/resolv.conf"
	# sid's Release file can be past its Valid-Until date; nothing in the
	# root starts services; no recommended packages.
	cat >"$new/etc/apt/apt.conf.d/90pg_herald" <<-'EOF'
		Acquire::Check-Valid-Until "false";
		APT::Install-Recommends "false";
	EOF
	printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
	chmod 755 "$new/usr/sbin/policy-rc.d"
	echo "deb-src $mirror $suite main" >"$new/etc/apt/sources.list.d/pg_herald-src.list"
	# postgresql-common: no "main" cluster made at install time
	mkdir -p "$new/etc/postgresql-common/createcluster.d"
	echo "create_main_cluster = false" >"$new/etc/postgresql-common/createcluster.d/pg_herald.conf"
	# shellcheck disable=SC2086  # word lists
	if ! in_root "$new" /bin/sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $packages $build_packages" >>"$log" 2>&1; then
		tail -n 30 "$log" >&2
		echo "pgroot.sh: installing packages in the $suite root failed" >&2
		return 1
	fi
	in_root "$new" /bin/sh -c 'apt-get clean' >>"$log" 2>&1
	echo "$stamp" >"$new/.pg_herald-stamp"
	rm -rf "$root"
	mv "$new" "$root"
}

# PostgreSQL 18 with assertions, from Debian's source package, in
# /opt/pg18-assert inside the root; made once, stamped with the version.
# Upstream's source as Debian ships it, without Debian's patches: those put
# the modules in /usr/lib/postgresql/18, over the packaged server's.
make_assert() {
	local prefix=/opt/pg18-assert
	local version
	version="$(in_root "$root" dpkg-query -W -f='${Version}' "postgresql-$major") recipe=$recipe"
	if [ "$(cat "$root$prefix/.pg_herald-stamp" 2>/dev/null)" = "$version" ]; then
		return 0
	fi
	echo "pgroot.sh: building PostgreSQL $version with assertions in $root$prefix (log: $log)" >&2
	rm -rf "$root$prefix" "$root/build/postgresql-src"
	mkdir -p "$root/build/postgresql-src"
	# shellcheck disable=SC2016  # expanded inside the root
	if ! in_root "$root" /bin/sh -ec '
		cd /build/postgresql-src
		apt-get source --download-only "postgresql-$1"
		dpkg-source -x --no-check --skip-patches ./*.dsc src
		cd src
		./configure --prefix="$2" --enable-cassert --enable-debug --enable-tap-tests \
			--with-openssl --with-icu --with-lz4 --with-zstd --without-readline \
			CFLAGS="-O1 -g" >configure.log
		make -s -j"$(($(nproc) + 1))"
		make -s install
		echo "$3" >"$2/.pg_herald-stamp"
	' sh "$major" "$prefix" "$version" >>"$log" 2>&1; then
		tail -n 40 "$log" >&2
		echo "pgroot.sh: building PostgreSQL with assertions failed" >&2
		return 1
	fi
	rm -rf "$root/build/postgresql-src"
}

# One maker per root at a time: a second caller waits, then finds it made.
mkdir -p "$cache"
exec 9>"$cache/$suite.lock"
flock 9
if [ "$(cat "$root/.pg_herald-stamp" 2>/dev/null)" != "$stamp" ]; then
	make_root
fi
if [ "$assert" = 1 ]; then
	make_assert
fi
flock -u 9
exec 9>&-

if [ $# -eq 0 ]; then
	echo "$root"
	exit 0
fi
[ "$1" = -- ] || usage
shift
in_root "$root" "$@"
