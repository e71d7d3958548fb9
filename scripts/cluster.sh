# shellcheck shell=bash
#
# Throwaway PostgreSQL cluster and test receiver for pg_herald.
#
# A library, sourced by test/run and scripts/demo.sh so that the way a
# cluster is set up exists once:
#
#   source scripts/cluster.sh
#   trap 'herald_stop_all' EXIT
#   herald_cluster_start "$tmp/pg" "herald.some_setting = 'x'"
#   herald_receiver_start "$tmp/receiver"
#   herald_smtp_start "$tmp/smtp"                # optional
#   psql -c 'CREATE EXTENSION pg_herald'      # PG* variables are exported
#
# herald_cluster_start DIR [LINE...]
#     Creates DIR (owned by postgres), runs initdb in DIR/data as postgres
#     with trust authentication, picks a free port on 127.0.0.1, loads
#     pg_herald through shared_preload_libraries, appends the extra
#     postgresql.conf LINEs (later lines win), starts the server with its log
#     in DIR/server.log and creates database "herald".  Exports PGHOST,
#     PGPORT, PGUSER, PGDATABASE, HERALD_PGDATA and HERALD_SERVER_LOG.
# herald_cluster_stop
#     Stops that cluster (fast, then immediate).  Safe to call twice.
# herald_receiver_start DIR
#     Copies test/receiver.py into DIR, starts it as postgres with its log in
#     DIR (so the server can read it with pg_read_file) and exports
#     HERALD_RECEIVER_URL, HERALD_RECEIVER_LOG and HERALD_RECEIVER_PID.
# herald_receiver_stop
#     Stops the receiver.  Safe to call twice.
# herald_smtp_start DIR
#     The same for the SMTP receiver test/smtp_receiver.py (needs
#     python3-aiosmtpd): log DIR/smtp.log; exports HERALD_SMTP_URL
#     (smtp://127.0.0.1:PORT), HERALD_SMTP_LOG and HERALD_SMTP_PID.
# herald_smtp_stop
#     Stops the SMTP receiver.  Safe to call twice.
# herald_test_env_start DIR
#     What the regression tests need besides the server: copies test/ to
#     DIR/test where the server's user can read it (exported as
#     HERALD_TEST_DIR), then starts both receivers in DIR/receiver and
#     DIR/smtp and exports their variables.  Stop them with herald_stop_all,
#     or herald_receiver_stop and herald_smtp_stop.
# herald_stop_all
#     All of the above, for a trap.
# herald_free_port
#     Prints a TCP port that is free on 127.0.0.1 right now.
# herald_pg_bindir
#     Prints PostgreSQL's bin directory.
# herald_python
#     Prints the Python 3 interpreter the postgres user runs the helpers with
#     (the system one: a per-user interpreter of root may be out of reach).
#
# Both receivers stop by themselves after HERALD_RECEIVER_MAX_SECONDS
# (default 3600).
#
# When run as root, the server and the receivers run as user postgres; the
# repository may live where postgres cannot read (for example under /root),
# so DIR must be somewhere postgres can reach (a mktemp -d directory made
# mode 755 is) and whatever postgres runs is copied there first.  When not
# run as root, everything runs as the current user.

HERALD_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

herald_pg_bindir() {
	local dir
	dir=$(pg_config --bindir 2>/dev/null || true)
	if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
		dir=/usr/lib/postgresql/${HERALD_PG_MAJOR:-15}/bin
	fi
	echo "$dir"
}

herald_python() {
	if [ -x /usr/bin/python3 ]; then
		echo /usr/bin/python3
	else
		command -v python3
	fi
}

herald_free_port() {
	"$(herald_python)" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Run a command as the user that owns the cluster and the receiver, from a
# directory that user can enter.
_herald_as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# Start a command in the background as postgres, without an intermediate
# process, so that $! is the command itself and can be signalled.
_herald_spawn_as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		cd /
		exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
	else
		exec "$@"
	fi
}

# Make a directory the cluster's user owns and everyone can traverse.
_herald_make_dir() {
	mkdir -p "$1"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres:postgres "$1"
	fi
	chmod 755 "$1"
}

herald_cluster_start() {
	if [ $# -lt 1 ]; then
		echo "herald_cluster_start: usage: herald_cluster_start DIR [postgresql.conf line...]" >&2
		return 2
	fi
	local dir=$1
	shift
	local bindir port attempt line
	bindir=$(herald_pg_bindir)

	_herald_make_dir "$dir"
	dir=$(cd "$dir" && pwd)
	export HERALD_PGDATA="$dir/data"
	export HERALD_SERVER_LOG="$dir/server.log"

	if ! _herald_as_postgres "$bindir/initdb" -D "$HERALD_PGDATA" -U postgres -A trust \
		-E UTF8 --locale=C -N >"$dir/initdb.log" 2>&1; then
		echo "herald_cluster_start: initdb failed:" >&2
		cat "$dir/initdb.log" >&2
		return 1
	fi
	echo "include 'herald_cluster.conf'" >>"$HERALD_PGDATA/postgresql.conf"

	# HERALD_VALGRIND (test/run): the server under Valgrind's memcheck,
	# each process's reports in DIR/valgrind.PID (pg_ctl -p starts the
	# wrapper, which becomes the postmaster)
	local server=() start_timeout=60
	if [ -n "${HERALD_VALGRIND:-}" ]; then
		start_timeout=600
		cp "$HERALD_REPO/test/valgrind.supp" "$dir/valgrind.supp"
		cat >"$dir/postgres-valgrind" <<-EOF
			#!/bin/sh
			exec valgrind --quiet --error-limit=no --num-callers=40 --leak-check=no \
				--trace-children=no --suppressions="$dir/valgrind.supp" \
				--log-file="$dir/valgrind.%p" "$bindir/postgres" "\$@"
		EOF
		chmod 755 "$dir/postgres-valgrind"
		server=(-p "$dir/postgres-valgrind")
	fi

	# The port is free when picked but may be taken before the server binds
	# it; try again with another one in that case.
	for attempt in 1 2 3; do
		port=$(herald_free_port)
		{
			echo "# written by scripts/cluster.sh"
			echo "port = $port"
			echo "listen_addresses = '127.0.0.1'"
			echo "unix_socket_directories = '$dir'"
			echo "shared_preload_libraries = 'pg_herald'"
			echo "herald.database = 'herald'"
			echo "logging_collector = off"
			echo "log_min_messages = info"
			echo "log_line_prefix = '%m [%p] %q%a '"
			echo "fsync = off"
			for line in "$@"; do
				echo "$line"
			done
		} >"$HERALD_PGDATA/herald_cluster.conf"
		chmod 644 "$HERALD_PGDATA/herald_cluster.conf"
		if [ "$(id -u)" -eq 0 ]; then
			chown postgres:postgres "$HERALD_PGDATA/herald_cluster.conf"
		fi

		if _herald_as_postgres "$bindir/pg_ctl" -D "$HERALD_PGDATA" -l "$HERALD_SERVER_LOG" \
			"${server[@]}" -w -t "$start_timeout" start >/dev/null 2>&1; then
			break
		fi
		if [ "$attempt" -lt 3 ] && grep -q -e 'could not bind' -e 'could not create any TCP/IP sockets' \
			"$HERALD_SERVER_LOG" 2>/dev/null; then
			continue
		fi
		echo "herald_cluster_start: the server did not start; end of $HERALD_SERVER_LOG:" >&2
		tail -n 40 "$HERALD_SERVER_LOG" >&2 2>/dev/null || true
		return 1
	done

	export PGHOST=127.0.0.1
	export PGPORT=$port
	export PGUSER=postgres
	export PGDATABASE=herald
	if ! "$bindir/createdb" -h "$PGHOST" -p "$PGPORT" -U postgres herald; then
		echo "herald_cluster_start: could not create database \"herald\"" >&2
		return 1
	fi
}

herald_cluster_stop() {
	local bindir
	[ -n "${HERALD_PGDATA:-}" ] || return 0
	[ -f "$HERALD_PGDATA/postmaster.pid" ] || return 0
	bindir=$(herald_pg_bindir)
	_herald_as_postgres "$bindir/pg_ctl" -D "$HERALD_PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
		_herald_as_postgres "$bindir/pg_ctl" -D "$HERALD_PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
		echo "herald_cluster_stop: could not stop the server in $HERALD_PGDATA" >&2
	return 0
}

# _herald_start_listener NAME SCRIPT DIR PIDVAR: copy test/SCRIPT (and
# test/receiver.py, which it may import) into DIR (which exists and is
# absolute), start it as postgres with its log in DIR/NAME.log, export its pid as
# PIDVAR at once (so that a trap can stop it) and wait for its port file.
# Sets _herald_listener_port; when the listener does not start, prints its
# output, stops it and returns 1.
_herald_start_listener() {
	local name=$1 script=$2 dir=$3 pidvar=$4 pid

	_herald_listener_port=
	install -m 644 "$HERALD_REPO/test/$script" "$dir/$script"
	# the SMTP receiver shares the HTTP receiver's log writer
	install -m 644 "$HERALD_REPO/test/receiver.py" "$dir/receiver.py"
	rm -f "$dir/$name.port"
	: >"$dir/$name.log"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres:postgres "$dir/$name.log"
	fi

	(_herald_spawn_as_postgres "$(herald_python)" "$dir/$script" --log "$dir/$name.log" --port 0 \
		--port-file "$dir/$name.port" --max-seconds "${HERALD_RECEIVER_MAX_SECONDS:-3600}") \
		</dev/null >"$dir/$name.out" 2>&1 &
	pid=$!
	export "$pidvar=$pid"

	for _ in $(seq 100); do
		if [ -s "$dir/$name.port" ]; then
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	if [ ! -s "$dir/$name.port" ]; then
		echo "${FUNCNAME[1]}: $script did not start:" >&2
		cat "$dir/$name.out" >&2 || true
		herald_stop_pid "$pid"
		export "$pidvar="
		return 1
	fi
	_herald_listener_port=$(cat "$dir/$name.port")
}

herald_receiver_start() {
	if [ $# -ne 1 ]; then
		echo "herald_receiver_start: usage: herald_receiver_start DIR" >&2
		return 2
	fi
	local dir=$1

	_herald_make_dir "$dir"
	dir=$(cd "$dir" && pwd)
	_herald_start_listener receiver receiver.py "$dir" HERALD_RECEIVER_PID || return 1
	export HERALD_RECEIVER_URL="http://127.0.0.1:$_herald_listener_port"
	export HERALD_RECEIVER_LOG="$dir/receiver.log"
}

herald_smtp_start() {
	if [ $# -ne 1 ]; then
		echo "herald_smtp_start: usage: herald_smtp_start DIR" >&2
		return 2
	fi
	local dir=$1

	_herald_make_dir "$dir"
	dir=$(cd "$dir" && pwd)
	_herald_start_listener smtp smtp_receiver.py "$dir" HERALD_SMTP_PID || return 1
	export HERALD_SMTP_URL="smtp://127.0.0.1:$_herald_listener_port"
	export HERALD_SMTP_LOG="$dir/smtp.log"
}

herald_test_env_start() {
	if [ $# -ne 1 ]; then
		echo "herald_test_env_start: usage: herald_test_env_start DIR" >&2
		return 2
	fi
	local dir=$1

	_herald_make_dir "$dir"
	dir=$(cd "$dir" && pwd)
	rm -rf "$dir/test"
	cp -r "$HERALD_REPO/test" "$dir/test"
	chmod -R a+rX "$dir/test"
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres:postgres "$dir/test"
	fi
	export HERALD_TEST_DIR="$dir/test"
	herald_receiver_start "$dir/receiver" || return 1
	herald_smtp_start "$dir/smtp" || return 1
}

# herald_stop_pid PID [SIGNAL]: send SIGNAL (TERM by default) to a process
# this shell started, KILL it if it is still there after 5 s, reap it.
herald_stop_pid() {
	local pid=$1 signal=${2:-TERM}
	[ -n "$pid" ] || return 0
	if kill -"$signal" "$pid" 2>/dev/null; then
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

herald_receiver_stop() {
	herald_stop_pid "${HERALD_RECEIVER_PID:-}"
	HERALD_RECEIVER_PID=
	return 0
}

herald_smtp_stop() {
	herald_stop_pid "${HERALD_SMTP_PID:-}"
	HERALD_SMTP_PID=
	return 0
}

herald_stop_all() {
	herald_receiver_stop
	herald_smtp_stop
	herald_cluster_stop
}
