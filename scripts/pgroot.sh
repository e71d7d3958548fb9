#!/usr/bin/env bash
# A Debian root with another PostgreSQL, to build and test pg_herald there.
#
#   bash scripts/pgroot.sh VERSION            make (or reuse) the root, print its path
#   bash scripts/pgroot.sh VERSION -- CMD...  run CMD inside it, as root
#
# VERSION is 17 (Debian 13 "trixie", postgresql-17), 18 (Debian "sid",
# postgresql-18), 18-assert (the same root, plus PostgreSQL 18 built from
# Debian's source package with --enable-cassert --enable-debug, installed in
# /opt/pg18-assert inside it) or 18-asan (likewise, also built with
# -fsanitize=address,undefined, in /opt/pg18-asan: what is built against it,
# pg_herald included, is instrumented too).  15 is the host's own PostgreSQL and needs no
# root.  The 17 root also holds a copy of the host's PostgreSQL 15 in
# /opt/pg15 (the old binaries pg_upgrade needs beside the new ones, for
# test/t/014_pg_upgrade.pl), made again when the host's packages change.
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
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
}

[ $# -ge 1 ] || usage
version=$1
shift
case "$version" in
	17) suite=trixie major=17 assert=0 old15=1 ;;
	18) suite=sid major=18 assert=0 old15=0 ;;
	18-assert) suite=sid major=18 assert=1 old15=0 ;;
	18-asan) suite=sid major=18 assert=asan old15=0 ;;
	-h | --help) usage ;;
	*)
		echo "pgroot.sh: unknown version '$version' (17, 18, 18-assert or 18-asan)" >&2
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
# what building PostgreSQL from source takes (for 18-assert).  libssl-dev,
# in build_packages, is also the libcrypto pg_herald links (NATS .creds).
packages="postgresql-$major postgresql-server-dev-$major libcurl4-openssl-dev libmicrohttpd-dev"
packages+=" libnats-dev nats-server openssl"
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
# /opt/pg18-assert inside the root (or, with the sanitizers, /opt/pg18-asan);
# made once, stamped with the version.  Upstream's source as Debian ships
# it, without Debian's patches: those put the modules in
# /usr/lib/postgresql/18, over the packaged server's.
make_assert() {
	local prefix=/opt/pg18-assert cflags="-O1 -g" ldflags="" what="with assertions"
	local version
	if [ "$assert" = asan ]; then
		prefix=/opt/pg18-asan
		cflags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined"
		ldflags="-fsanitize=address,undefined"
		what="with assertions, AddressSanitizer and UndefinedBehaviorSanitizer"
	fi
	version="$(in_root "$root" dpkg-query -W -f='${Version}' "postgresql-$major") recipe=$recipe"
	if [ "$(cat "$root$prefix/.pg_herald-stamp" 2>/dev/null)" = "$version" ]; then
		return 0
	fi
	echo "pgroot.sh: building PostgreSQL $version $what in $root$prefix (log: $log)" >&2
	rm -rf "$root$prefix" "$root/build/postgresql-src"
	mkdir -p "$root/build/postgresql-src"
	# shellcheck disable=SC2016  # expanded inside the root
	if ! in_root "$root" /bin/sh -ec '
		cd /build/postgresql-src
		apt-get source --download-only "postgresql-$1"
		dpkg-source -x --no-check --skip-patches ./*.dsc src
		cd src
		# the build runs its own programs (initdb for the catalogs): no
		# leak reports from them
		ASAN_OPTIONS=detect_leaks=0
		export ASAN_OPTIONS
		./configure --prefix="$2" --enable-cassert --enable-debug --enable-tap-tests \
			--with-openssl --with-icu --with-lz4 --with-zstd --without-readline \
			CFLAGS="$4" LDFLAGS="$5" >configure.log
		make -s -j"$(($(nproc) + 1))"
		make -s install
		echo "$3" >"$2/.pg_herald-stamp"
	' sh "$major" "$prefix" "$version" "$cflags" "$ldflags" >>"$log" 2>&1; then
		tail -n 40 "$log" >&2
		echo "pgroot.sh: building PostgreSQL $what failed" >&2
		return 1
	fi
	rm -rf "$root/build/postgresql-src"
}

# The host's PostgreSQL 15 (Debian 12's packages postgresql-15 and
# postgresql-server-dev-15), copied into /opt/pg15 inside the root with
# Debian's layout below it: the binaries find their files relative to
# themselves (as pg_config reports them), so pg_herald builds against it
# and pg_upgrade runs it as the old cluster.  The shared libraries it needs
# that the root lacks (ICU 72, OpenLDAP 2.5 and what they pull in) are the
# host's, in /opt/pg15/lib, which the root's dynamic linker searches
# (ld.so.conf.d): their sonames are not the root's own, so nothing else
# loads them.  JIT is left out (llvmjit.so and its bitcode would need
# LLVM 14).  Stamped with the host's package versions.
make_pg15() {
	local dest=$root/opt/pg15 pkgdir=/usr/lib/postgresql/15 version map missing lib path
	if [ "$(dpkg-query -W -f='${db:Status-Status}\n' postgresql-15 postgresql-server-dev-15 2>/dev/null |
		grep -cx installed)" != 2 ]; then
		echo "pgroot.sh: installing postgresql-15 and postgresql-server-dev-15 on the host (log: $log)" >&2
		flock /run/lock/pg_herald-apt.lock sh -c '
			apt-get -o DPkg::Lock::Timeout=600 update &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
				install -y postgresql-15 postgresql-server-dev-15' >>"$log" 2>&1
	fi
	version="$(dpkg-query -W -f='${Package}=${Version} ' postgresql-15 postgresql-server-dev-15)recipe=$recipe"
	if [ "$(cat "$dest/.pg_herald-stamp" 2>/dev/null)" = "$version" ]; then
		return 0
	fi
	echo "pgroot.sh: copying the host's PostgreSQL 15 into $dest" >&2
	rm -rf "$dest"
	mkdir -p "$dest/usr/lib/postgresql" "$dest/usr/share/postgresql" "$dest/usr/include" "$dest/lib"
	cp -a $pkgdir "$dest/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/15 "$dest/usr/share/postgresql/"
	cp -a /usr/include/postgresql "$dest/usr/include/"
	# not a pg_herald the host may have installed: tests install their own
	rm -rf "$dest$pkgdir"/lib/pg_herald.so "$dest$pkgdir"/lib/bitcode "$dest$pkgdir"/lib/llvmjit* \
		"$dest"/usr/share/postgresql/15/extension/pg_herald*
	echo /opt/pg15/lib >"$root/etc/ld.so.conf.d/pg_herald-pg15.conf"
	# where the host finds each library the binaries and modules need
	map=$(find $pkgdir -type f \( -name '*.so' -o -path '*/bin/*' \) -print0 |
		xargs -0 ldd 2>/dev/null | sed -n 's/^[[:space:]]*\([^ ]*\) => \(\/[^ ]*\) .*/\1 \2/p' | sort -u)
	# the root's loader says what it lacks; what those bring lacks more
	for _ in 1 2 3 4 5 6; do
		# shellcheck disable=SC2016  # expanded inside the root
		missing=$(in_root "$root" /bin/sh -c 'ldconfig
			find /opt/pg15/usr/lib/postgresql/15 /opt/pg15/lib -type f \( -name "*.so*" -o -path "*/bin/*" \) |
				xargs ldd 2>/dev/null | sed -n "s/^[[:space:]]*\([^ ]*\) => not found.*/\1/p" | sort -u')
		[ -n "$missing" ] || break
		for lib in $missing; do
			path=$(awk -v l="$lib" '$1 == l { print $2; exit }' <<<"$map")
			if [ -z "$path" ]; then
				echo "pgroot.sh: PostgreSQL 15 needs $lib, which the host does not have" >&2
				return 1
			fi
			cp -L "$path" "$dest/lib/$lib"
		done
	done
	if [ -n "$missing" ] || ! in_root "$root" /opt/pg15$pkgdir/bin/postgres -V >/dev/null; then
		echo "pgroot.sh: PostgreSQL 15 does not run in the $suite root (missing: ${missing:-none})" >&2
		return 1
	fi
	echo "$version" >"$dest/.pg_herald-stamp"
}

# One maker per root at a time: a second caller waits, then finds it made.
mkdir -p "$cache"
exec 9>"$cache/$suite.lock"
flock 9
if [ "$(cat "$root/.pg_herald-stamp" 2>/dev/null)" != "$stamp" ]; then
	make_root
fi
if [ "$assert" != 0 ]; then
	make_assert
fi
if [ "$old15" = 1 ]; then
	make_pg15
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
