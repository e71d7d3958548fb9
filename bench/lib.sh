# shellcheck shell=bash
#
# Shared pieces of the pg_herald benchmarks, sourced by bench/*.sh so that
# the receiver, the load tools and the report format exist once.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init throughput "$@"         # temp dir, traps, dependencies
#   herald_cluster_start "$BENCH_TMP/pg" # from scripts/cluster.sh
#   bench_nginx_start                  # exports BENCH_NGINX_URL
#   ...
#   { bench_table <<<"$rows"; bench_machine; } | bench_report
#
# bench_init NAME [ARG...]
#     Installs missing benchmark packages (scripts/deps.sh --bench), makes
#     the temporary directory BENCH_TMP (removed on exit unless BENCH_KEEP=1)
#     and sets the traps: on exit, also on failure or Ctrl-C, every
#     background process, nginx and the cluster are stopped.  Records the
#     exact command for the report.
# bench_nginx_start
#     Starts nginx (one worker, keep-alive, "return 204" for everything) on
#     a free port of 127.0.0.1, as postgres when run as root, and checks that
#     a POST gets 204.  Requests under /log/ are written to BENCH_NGINX_LOG
#     as "$msec $http_webhook_id $content_length" (receipt time in seconds,
#     millisecond resolution); everything else is not logged.  Exports
#     BENCH_NGINX_URL and BENCH_NGINX_LOG.
# bench_nginx_stop
#     Stops it.  Safe to call twice.
# bench_wrk SECONDS CONNECTIONS BODY_BYTES
#     Runs wrk (one thread) against nginx with POST requests shaped like a
#     pg_herald webhook (same headers, a body of BODY_BYTES) and prints
#     "requests seconds requests_per_second".
# bench_psql [psql arguments]
#     psql -X -q -At with ON_ERROR_STOP, killed after BENCH_SQL_TIMEOUT
#     seconds (default 300).
# bench_pgbench [pgbench arguments]
#     pgbench, killed after BENCH_SQL_TIMEOUT seconds.
# bench_bg SECONDS COMMAND...
#     Starts COMMAND (a program, not a function) in the background, killed
#     after SECONDS, and remembers it for the cleanup; sets BENCH_BG_PID.
# bench_drain SECONDS
#     Waits until the deliveries that exist now are delivered or dead, with
#     herald.flush('1 second') calls, for at most about SECONDS.  Prints
#     "t EPOCH" (done; EPOCH = the server's clock when the last call
#     returned) or "f EPOCH" (gave up).
# bench_worker_pid [TYPE]
#     Prints the pid of the (first) pg_herald worker whose backend_type is
#     TYPE ("pg_herald delivery", the default, or "pg_herald scheduler"), or
#     nothing.
# bench_wait_worker [TYPE]
#     Waits up to 30 s for such a worker (it starts a few seconds after the
#     cluster: database "herald" is created after the server) and prints
#     its pid.
# bench_pause_worker PID / bench_resume_worker
#     Stops a worker with SIGSTOP at a moment it sleeps in its wait (holding
#     no lock and no transaction), and lets it go on.  The cleanup resumes a
#     paused worker, so the cluster can stop.
# bench_proc_usage PID
#     Prints "CPU_SECONDS WAITS": the CPU time (user + system) process PID
#     has used so far, and how many times it went to sleep (its voluntary
#     context switches: about one per wake-up of a worker's latch).
# bench_nginx_receipts TABLE
#     Gives nginx a second to write its last log lines, then loads
#     BENCH_NGINX_LOG into a new table TABLE (at double precision,
#     webhook_id text, bytes text) of the current database.
# bench_server_log_summary
#     Prints the ERROR / FATAL / PANIC / WARNING lines of the current
#     cluster's log, counted by message, or "none".
# bench_orders_table NAME
#     Prints the CREATE TABLE of the orders table the write-path benchmarks
#     insert into, so that their variants differ only in what fires.
# bench_pgq
#     Makes PgQ (Debian's postgresql-15-pgq3) available to the benchmark's
#     PostgreSQL: installs the package when missing (as root, like
#     scripts/deps.sh), then, when that PostgreSQL is not the system one (a
#     private copy first on PATH, whose pg_config --sharedir / --pkglibdir
#     are elsewhere), copies the package's extension files and libraries
#     into its directories.  Then CREATE EXTENSION pgq works in the cluster.
# bench_table
#     Reads "|"-separated rows from stdin (the first is the header) and
#     prints them as an aligned plain-text table.
# bench_median NUMBER...
#     Prints the median.
# bench_machine
#     Prints the machine, the software versions and the command.
# bench_report
#     Copies stdin to stdout and appends it to $BENCH_REPORT when set (the
#     way bench/all.sh collects every table).
# bench_say MESSAGE
#     A progress line on stderr (stdout carries the report only).
# bench_die MESSAGE
#     Prints "NAME: MESSAGE" on stderr and exits 1.
#
# Uses scripts/cluster.sh for the cluster and its helpers
# _herald_make_dir / _herald_spawn_as_postgres to run nginx as postgres.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(cd "$BENCH_DIR/.." && pwd)

# shellcheck source=scripts/cluster.sh
source "$BENCH_REPO/scripts/cluster.sh"

BENCH_PGBIN=$(herald_pg_bindir)
BENCH_NAME=bench
BENCH_TMP=
BENCH_COMMAND=
BENCH_LOAD_START=
BENCH_BUILD=
BENCH_SO=
BENCH_SO_INSTALLED=
BENCH_PAUSED_PID=
BENCH_NGINX_PID=
BENCH_NGINX_URL=
BENCH_NGINX_LOG=
BENCH_BG_PIDS=()

bench_die() {
	echo "$BENCH_NAME: $*" >&2
	exit 1
}

# Progress lines go to stderr so that stdout holds the report only.
bench_say() {
	echo "[$BENCH_NAME $(date +%H:%M:%S)] $*" >&2
}

bench_init() {
	BENCH_NAME=$1
	shift
	BENCH_COMMAND="bash bench/$BENCH_NAME.sh"
	local arg
	for arg in "$@"; do
		if [[ $arg =~ ^[A-Za-z0-9_,./=:+-]+$ ]]; then
			BENCH_COMMAND+=" $arg"
		else
			BENCH_COMMAND+=" $(printf '%q' "$arg")"
		fi
	done

	bash "$BENCH_REPO/scripts/deps.sh" --bench >&2
	local tool
	for tool in nginx wrk curl "$BENCH_PGBIN/pgbench" "$BENCH_PGBIN/psql"; do
		command -v "$tool" >/dev/null || bench_die "$tool not found (bash scripts/deps.sh --bench)"
	done

	BENCH_TMP=$(mktemp -d "/tmp/pg_herald_bench_$BENCH_NAME.XXXXXX")
	chmod 755 "$BENCH_TMP"
	trap bench_cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 141' PIPE
	trap 'exit 143' TERM
	BENCH_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	# the build the cluster is about to load, for the report
	BENCH_SO=$(pg_config --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)/pg_herald.so
	BENCH_SO_INSTALLED=$(stat -c '%y' "$BENCH_SO" 2>/dev/null | cut -d. -f1)
	BENCH_BUILD="$(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (working tree$(git -C "$BENCH_REPO" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
}

bench_cleanup() {
	local rc=$? pid
	trap - EXIT
	# finish the cleanup even if the terminal or a pipe goes away meanwhile
	trap '' HUP INT PIPE TERM
	set +e
	for pid in "${BENCH_BG_PIDS[@]}"; do
		herald_stop_pid "$pid"
	done
	bench_resume_worker
	bench_nginx_stop
	if [ "$rc" -ne 0 ]; then
		echo "$BENCH_NAME: failed (exit $rc)" >&2
		if [ -n "${HERALD_SERVER_LOG:-}" ] && [ -f "$HERALD_SERVER_LOG" ]; then
			echo "---- last lines of $HERALD_SERVER_LOG ----" >&2
			tail -n 30 "$HERALD_SERVER_LOG" >&2 || true
		fi
		if [ -s "$BENCH_TMP/nginx/error.log" ]; then
			echo "---- last lines of the nginx error log ----" >&2
			tail -n 10 "$BENCH_TMP/nginx/error.log" >&2 || true
		fi
	fi
	herald_stop_all >/dev/null 2>&1 || true
	if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then
			echo "$BENCH_NAME: kept $BENCH_TMP" >&2
		else
			rm -rf "$BENCH_TMP"
		fi
	fi
	exit "$rc"
}


bench_bg() {
	local seconds=$1
	shift
	timeout "$seconds" "$@" &
	BENCH_BG_PID=$!
	BENCH_BG_PIDS+=("$BENCH_BG_PID")
}

bench_psql() {
	timeout "${BENCH_SQL_TIMEOUT:-300}" "$BENCH_PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

bench_pgbench() {
	timeout "${BENCH_SQL_TIMEOUT:-300}" "$BENCH_PGBIN/pgbench" "$@"
}

# herald.flush() keeps its statement's snapshot for as long as it waits,
# which holds back the xmin horizon: while it waits, dead queue rows cannot
# be pruned and the claims slow down (150,000 deliveries drained in 15 s with
# 1-second calls, 54 s with one long call, on the 2-core machine).  Short
# calls keep the measurement from slowing what it measures.
bench_drain() {
	local deadline=$(($(date +%s) + $1)) out
	for _ in $(seq $(($1 + 10))); do
		out=$(bench_psql -F ' ' -c "SELECT herald.flush('1 second'), extract(epoch FROM clock_timestamp())")
		case "$out" in
			"t "*)
				echo "$out"
				return 0
				;;
		esac
		[ "$(date +%s)" -lt "$deadline" ] || break
	done
	echo "f ${out#* }"
}

bench_worker_pid() {
	bench_psql -v type="${1:-pg_herald delivery}" <<'SQL'
SELECT pid FROM pg_stat_activity
 WHERE backend_type = :'type' ORDER BY backend_start, pid LIMIT 1;
SQL
}

# shellcheck disable=SC2120  # TYPE is optional
bench_wait_worker() {
	local type=${1:-pg_herald delivery} pid
	for _ in $(seq 60); do
		pid=$(bench_worker_pid "$type")
		if [ -n "$pid" ]; then
			echo "$pid"
			return 0
		fi
		sleep 0.5
	done
	bench_die "no $type worker in pg_stat_activity after 30 s"
}

bench_proc_usage() {
	local hz cpu waits
	hz=$(getconf CLK_TCK)
	# fields 14 and 15 of /proc/PID/stat, counted after "PID (COMM) "
	cpu=$(sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }')
	waits=$(awk '/^voluntary_ctxt_switches:/ { print $2 }' "/proc/$1/status")
	echo "$cpu $waits"
}

# Pause a worker with SIGSTOP, only while it sleeps in its wait
# (epoll): then it holds no lock and no transaction, so writers never wait
# on it.  The sleeping system call is learned from the worker itself first.
bench_pause_worker() {
	local pid=$1 idle_nr='' nr state
	for _ in $(seq 100); do
		if [ "$(cat "/proc/$pid/wchan" 2>/dev/null || true)" = do_epoll_wait ]; then
			idle_nr=$(cut -d' ' -f1 "/proc/$pid/syscall" 2>/dev/null || true)
			[[ $idle_nr =~ ^[0-9]+$ ]] && break
			idle_nr=
		fi
		sleep 0.02
	done
	[ -n "$idle_nr" ] || bench_die "could not see worker $pid sleep in epoll_wait"
	for _ in $(seq 200); do
		kill -STOP "$pid"
		BENCH_PAUSED_PID=$pid
		for _ in $(seq 100); do
			state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
			[ "$state" != T ] || break
			sleep 0.01
		done
		nr=$(cut -d' ' -f1 "/proc/$pid/syscall" 2>/dev/null || true)
		if [ "$state" = T ] && [ "$nr" = "$idle_nr" ]; then
			return 0
		fi
		bench_resume_worker
		sleep 0.02
	done
	bench_die "could not pause worker $pid while it was idle"
}

bench_resume_worker() {
	[ -n "${BENCH_PAUSED_PID:-}" ] || return 0
	kill -CONT "$BENCH_PAUSED_PID" 2>/dev/null || true
	BENCH_PAUSED_PID=
}

# --- nginx ----------------------------------------------------------------

_bench_nginx_conf() {
	local dir=$1 port=$2 path
	echo "# written by bench/lib.sh"
	echo "daemon off;"
	echo "worker_processes 1;"
	echo "pid $dir/nginx.pid;"
	echo "error_log $dir/error.log warn;"
	echo "events { worker_connections 1024; }"
	echo "http {"
	echo "    access_log off;"
	for path in client_body proxy fastcgi uwsgi scgi; do
		echo "    ${path}_temp_path $dir/$path;"
	done
	echo "    keepalive_requests 1000000;"
	echo "    keepalive_timeout 300s;"
	echo "    log_format bench '\$msec \$http_webhook_id \$content_length';"
	echo "    server {"
	echo "        listen 127.0.0.1:$port;"
	echo "        location / { return 204; }"
	echo "        location /log/ { access_log $dir/access.log bench; return 204; }"
	echo "    }"
	echo "}"
}

_bench_post_status() {
	curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 \
		-X POST -H 'content-type: application/json' -d '{"check": true}' "$1" || true
}

bench_nginx_start() {
	local dir=$BENCH_TMP/nginx port attempt status
	_herald_make_dir "$dir"
	for attempt in 1 2 3; do
		port=$(herald_free_port)
		_bench_nginx_conf "$dir" "$port" >"$dir/nginx.conf"
		: >"$dir/error.log"
		: >"$dir/access.log"
		if [ "$(id -u)" -eq 0 ]; then
			chown postgres:postgres "$dir/error.log" "$dir/access.log"
		fi
		# as postgres when root (scripts/cluster.sh's helper), so $! is nginx
		(_herald_spawn_as_postgres nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log") \
			</dev/null >"$dir/nginx.out" 2>&1 &
		BENCH_NGINX_PID=$!
		status=
		for _ in $(seq 50); do
			kill -0 "$BENCH_NGINX_PID" 2>/dev/null || break
			status=$(_bench_post_status "http://127.0.0.1:$port/check")
			[ "$status" = 204 ] && break
			sleep 0.1
		done
		if [ "$status" = 204 ]; then
			BENCH_NGINX_URL="http://127.0.0.1:$port"
			BENCH_NGINX_LOG="$dir/access.log"
			status=$(_bench_post_status "$BENCH_NGINX_URL/log/check")
			[ "$status" = 204 ] || bench_die "nginx answered $status on /log/, not 204"
			: >"$BENCH_NGINX_LOG"
			export BENCH_NGINX_URL BENCH_NGINX_LOG
			return 0
		fi
		bench_nginx_stop
		grep -q 'Address already in use' "$dir/error.log" "$dir/nginx.out" 2>/dev/null || break
	done
	cat "$dir/error.log" "$dir/nginx.out" >&2 2>/dev/null || true
	bench_die "nginx did not answer 204 on 127.0.0.1"
}

bench_nginx_stop() {
	local pid=$BENCH_NGINX_PID children
	[ -n "$pid" ] || return 0
	BENCH_NGINX_PID=
	children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
	# QUIT is nginx's graceful stop; the worker follows its master.
	herald_stop_pid "$pid" QUIT
	for pid in $children; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	return 0
}

bench_nginx_receipts() {
	# nginx writes each log line when it answers; give it a moment
	sleep 1
	bench_psql -c "CREATE TABLE $1 (at double precision, webhook_id text, bytes text)"
	BENCH_SQL_TIMEOUT=600 bench_psql -c "COPY $1 FROM STDIN WITH (FORMAT text, DELIMITER ' ')" \
		<"$BENCH_NGINX_LOG"
}

# --- wrk ------------------------------------------------------------------

bench_wrk() {
	local seconds=$1 connections=$2 bytes=$3 out rps requests errors
	local lua=$BENCH_TMP/wrk_post.lua
	# A request shaped like a pg_herald webhook: same method, headers and
	# body size (the body is filler: nginx does not parse it).
	cat >"$lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["user-agent"] = "pg_herald/0.1.0"
wrk.headers["webhook-id"] = "msg_16385_1234567"
wrk.headers["webhook-timestamp"] = "1795438903"
wrk.headers["webhook-signature"] = "v1,4UbUzYEdG7bIt/54tesA11HZmf71C1Y+bO+wsVlacFA="
wrk.body = '{"data": "' .. string.rep("x", $bytes - 12) .. '"}'
LUA
	out=$(timeout $((seconds + 30)) wrk -t1 -c"$connections" -d"${seconds}s" -s "$lua" \
		"$BENCH_NGINX_URL/wrk") || bench_die "wrk failed: $out"
	errors=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
	[ -z "$errors" ] || bench_die "wrk got $errors non-2xx answers"
	requests=$(awk '/requests in/ { print $1 }' <<<"$out")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
	if [ -z "$requests" ] || [ -z "$rps" ]; then
		bench_die "could not read wrk's output: $out"
	fi
	echo "$requests $seconds $rps"
}

# --- reporting --------------------------------------------------------------

bench_table() {
	awk -F'|' '
		{ rows[NR] = $0; for (i = 1; i <= NF; i++) { gsub(/^ +| +$/, "", $i); cell[NR, i] = $i
			if (length($i) > width[i]) width[i] = length($i) } if (NF > cols) cols = NF }
		END {
			for (r = 1; r <= NR; r++) {
				line = ""
				for (i = 1; i <= cols; i++) {
					# first column left-aligned, the others (numbers) right-aligned
					fmt = (i == 1) ? "%-" width[i] "s" : "%" width[i] "s"
					line = line (i > 1 ? "  " : "") sprintf(fmt, cell[r, i])
				}
				print line
				if (r == 1) {
					sep = ""
					for (i = 1; i <= cols; i++) {
						dash = sprintf("%" width[i] "s", ""); gsub(/ /, "-", dash)
						sep = sep (i > 1 ? "  " : "") dash
					}
					print sep
				}
			}
		}'
}

bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit 1
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bench_server_log_summary() {
	local log=${HERALD_SERVER_LOG:-} lines line
	if [ -z "$log" ] || [ ! -f "$log" ]; then
		echo "no server log"
		return 0
	fi
	# The workers start before scripts/cluster.sh creates database "herald"
	# and say so once; that line is expected and left out.
	lines=$(grep -E '(ERROR|FATAL|PANIC|WARNING): ' "$log" |
		grep -v 'FATAL:  database "herald" does not exist' |
		sed -E 's/^.*(ERROR|FATAL|PANIC|WARNING): +/\1: /' |
		sort | uniq -c | sort -rn | head -n 5 || true)
	if [ -z "$lines" ]; then
		echo "none"
	else
		echo
		while IFS= read -r line; do
			echo "    $line"
		done <<<"$lines"
	fi
}

bench_machine() {
	local cpu installed
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	echo "machine:    $(nproc) cores (nproc), ${cpu:-unknown CPU}, $(awk '/^MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo)"
	echo "            $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
	echo "software:   $("$BENCH_PGBIN/postgres" --version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }')"
	echo "pg_herald:  $BENCH_BUILD at the start, installed $BENCH_SO_INSTALLED"
	installed=$(stat -c '%y' "$BENCH_SO" 2>/dev/null | cut -d. -f1)
	if [ "$installed" != "$BENCH_SO_INSTALLED" ]; then
		echo "            (pg_herald.so was replaced at $installed while the benchmark ran; its cluster had"
		echo "            loaded the build installed at the start)"
	fi
	echo "load avg:   $BENCH_LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min)"
	echo "command:    $BENCH_COMMAND"
	echo "finished:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
}

bench_report() {
	if [ -n "${BENCH_REPORT:-}" ]; then
		tee -a "$BENCH_REPORT"
	else
		cat
	fi
}

# bench_usage FIRST,LAST [STATUS]: print the script's header comment lines
# FIRST to LAST as its usage and exit.
bench_usage() {
	sed -n "${1}p" "$0" | sed 's/^# \{0,1\}//'
	exit "${2:-0}"
}

# bench_positive_ints VALUE...: die unless every VALUE is a positive integer.
bench_positive_ints() {
	local n
	for n in "$@"; do
		[[ $n =~ ^[1-9][0-9]*$ ]] || bench_die "not a positive integer: $n"
	done
}

bench_orders_table() {
	cat <<SQL
CREATE TABLE $1 (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SQL
}

# The do-it-yourself peer: a PL/pgSQL AFTER ROW trigger on table $1 that
# appends to_jsonb(NEW) to an outbox table.
bench_outbox() {
	cat <<SQL
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE FUNCTION outbox_capture() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    INSERT INTO outbox (payload)
    VALUES (jsonb_build_object('table', TG_TABLE_NAME, 'operation', TG_OP, 'new', to_jsonb(NEW)));
    RETURN NULL;
END
\$\$;
CREATE TRIGGER $1_capture AFTER INSERT ON $1
    FOR EACH ROW EXECUTE FUNCTION outbox_capture();
SQL
}

bench_pgq() {
	local pkg=postgresql-15-pgq3 status sharedir pkglibdir file dest copied=0
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != installed ]; then
		[ "$(id -u)" -eq 0 ] || bench_die "$pkg is missing; install it as root: apt-get install $pkg"
		bench_say "installing $pkg"
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2
	fi
	sharedir=$("$BENCH_PGBIN/pg_config" --sharedir)
	pkglibdir=$("$BENCH_PGBIN/pg_config" --pkglibdir)
	# The package installs under the system PostgreSQL's directories; a
	# private copy looks in its own.
	while IFS= read -r file; do
		[ -f "$file" ] || continue
		case "$file" in
			/usr/share/postgresql/15/extension/*) dest=$sharedir/extension/${file#/usr/share/postgresql/15/extension/} ;;
			/usr/lib/postgresql/15/lib/*) dest=$pkglibdir/${file#/usr/lib/postgresql/15/lib/} ;;
			*) continue ;;
		esac
		[ ! "$file" -ef "$dest" ] || continue
		cmp -s "$file" "$dest" 2>/dev/null && continue
		install -D -m 644 "$file" "$dest"
		copied=$((copied + 1))
	done < <(dpkg-query -L "$pkg")
	[ "$copied" -eq 0 ] || bench_say "copied $copied PgQ files into $sharedir and $pkglibdir"
	[ -f "$sharedir/extension/pgq.control" ] || bench_die "no pgq.control in $sharedir/extension"
}
