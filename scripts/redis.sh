#!/usr/bin/env bash
# Runs a Redis on loopback for the proxy's shared index (--redis-url), for tests and the demo: a
# daemon of this script's own (not the system's redis-server service), persistent (append-only file,
# fsync every second), so that a restart keeps its keys.
#
#   scripts/redis.sh start      start in the background, wait until PING answers PONG (installs
#                               redis-server with apt-get when it is missing)
#   scripts/redis.sh install    only install redis-server (and redis-cli) when missing: apt-get install,
#                               with sudo when not root
#   scripts/redis.sh stop       TERM the instance started from the same working dir; KILL after a timeout
#   scripts/redis.sh restart    stop, then start with the same port and working dir: the keys stay
#   scripts/redis.sh kill       KILL it at once (a crash, for fault tests); start brings the keys back
#                               as far as the last fsync of the append-only file
#   scripts/redis.sh status     exit 0 when running and answering PONG, 3 when not running, 1 when not answering
#   scripts/redis.sh url        print the URL for --redis-url (redis://[:PASSWORD@]HOST:PORT/0)
#   scripts/redis.sh cli ARGS   run redis-cli ARGS against it (e.g. cli SET k v, cli KEYS 'fbp:*')
#
# Env (defaults):
#   REDIS_PORT=6379             TCP port
#   REDIS_HOST=127.0.0.1        bind address
#   REDIS_PASSWORD=             requirepass when set (and in the URL); empty: no password
#   REDIS_WORKING_DIR=.redis/<REDIS_PORT> under the repo root: pid file, log, appendonlydir/
#   REDIS_SERVER=redis-server   the server binary (valkey-server works too)
#   REDIS_START_TIMEOUT=30      seconds to wait for PONG (a large append-only file takes a while to load)
#   REDIS_STOP_TIMEOUT=20       seconds between TERM and KILL
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

port="${REDIS_PORT:-6379}"
host="${REDIS_HOST:-127.0.0.1}"
password="${REDIS_PASSWORD:-}"
workdir="${REDIS_WORKING_DIR:-$root/.redis/$port}"
server="${REDIS_SERVER:-redis-server}"
start_timeout="${REDIS_START_TIMEOUT:-30}"
stop_timeout="${REDIS_STOP_TIMEOUT:-20}"

pidfile="$workdir/redis.pid"
logfile="$workdir/redis.log"

# A client reaches a wildcard bind through loopback.
case "$host" in
0.0.0.0 | :: | "*") client_host=127.0.0.1 ;;
*) client_host="$host" ;;
esac
case "$client_host" in
*:*) url_host="[$client_host]" ;;
*) url_host="$client_host" ;;
esac

log() { printf 'redis.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

[[ $port =~ ^[0-9]+$ ]] || die "REDIS_PORT=$port is not a port number"

# urlencode percent-encodes all but RFC 3986's unreserved characters, byte by byte.
urlencode() {
	local LC_ALL=C s="$1" out="" c i
	for ((i = 0; i < ${#s}; i++)); do
		c="${s:i:1}"
		case "$c" in
		[a-zA-Z0-9._~-]) out+="$c" ;;
		*) out+="$(printf '%%%02X' "'$c")" ;;
		esac
	done
	printf '%s' "$out"
}

url() {
	if [[ -n $password ]]; then
		printf 'redis://:%s@%s:%s/0\n' "$(urlencode "$password")" "$url_host" "$port"
	else
		printf 'redis://%s:%s/0\n' "$url_host" "$port"
	fi
}

cli_bin() {
	local c
	for c in "${REDIS_CLI:-}" "${server%-server}-cli" redis-cli valkey-cli; do
		[[ -n $c ]] && command -v "$c" >/dev/null 2>&1 && { echo "$c"; return 0; }
	done
	return 1
}

# resp encodes its arguments as one RESP command (an array of bulk strings).
resp() {
	local a
	printf '*%d\r\n' "$#"
	for a in "$@"; do
		printf '$%d\r\n%s\r\n' "$(printf '%s' "$a" | LC_ALL=C wc -c)" "$a"
	done
}

# cli_env is the environment that gives redis-cli (or valkey-cli) the password, if there is one.
cli_env() {
	[[ -n $password ]] && printf '%s\n' "REDISCLI_AUTH=$password" "VALKEYCLI_AUTH=$password"
	return 0
}

# pong succeeds when the server answers PING with PONG (not LOADING, not NOAUTH).
pong() {
	local cli out envs
	if cli="$(cli_bin)"; then
		mapfile -t envs < <(cli_env)
		out="$(env "${envs[@]}" timeout 3 "$cli" -h "$client_host" -p "$port" PING 2>/dev/null)" || return 1
		[[ $out == PONG ]]
		return
	fi
	# No redis-cli: speak RESP over bash's /dev/tcp.
	(
		exec 3<>"/dev/tcp/$client_host/$port" || exit 1
		if [[ -n $password ]]; then
			resp AUTH "$password" >&3
			IFS= read -r -t 2 out <&3 || exit 1
			[[ $out == +OK* ]] || exit 1
		fi
		resp PING >&3
		IFS= read -r -t 2 out <&3 || exit 1
		[[ $out == +PONG* ]]
	) 2>/dev/null
}

# port_open succeeds when something accepts TCP connections on host:port.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# running prints the pid from the pid file when that process is alive and is a Redis server: a pid
# file left behind by a crash may name a pid the OS has since given to something else.
running() {
	local pid
	[[ -f $pidfile ]] || return 1
	pid="$(cat "$pidfile" 2>/dev/null)"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	# The server sets its title to "redis-server HOST:PORT".
	if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-server"; then
		return 1
	fi
	echo "$pid"
}

log_tail() {
	[[ -f $logfile ]] || return 0
	log "last lines of $logfile:"
	tail -n 40 "$logfile" >&2
}

# alive succeeds when pid $1 exists and has not exited: a server that exited stays a zombie until
# init reaps it (the server is re-parented there), which some container inits do only every second or two.
alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	[[ -r /proc/$1/stat ]] || return 0
	state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" || return 1
	[[ ${state:0:1} != Z ]]
}

# wait_gone waits up to $2 seconds for pid $1 to exit.
wait_gone() {
	local deadline=$((SECONDS + $2))
	while alive "$1"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# install_server installs Debian's redis-server (it brings redis-cli, from redis-tools).
install_server() {
	local sudo=()
	command -v apt-get >/dev/null 2>&1 ||
		die "$server is not installed and there is no apt-get: install Redis (or Valkey, with REDIS_SERVER=valkey-server)"
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 ||
			die "$server is not installed, and installing it needs root: apt-get install -y --no-install-recommends redis-server"
		sudo=(sudo)
	fi
	log "$server not found: installing redis-server with apt-get"
	local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server)
	if ! "${install[@]}" >&2; then
		log "apt-get install failed; updating the package lists and trying again"
		"${sudo[@]}" apt-get update >&2 && "${install[@]}" >&2 ||
			die "could not install redis-server; install it (apt-get install -y --no-install-recommends redis-server) and run $0 start again"
	fi
	command -v "$server" >/dev/null 2>&1 || die "redis-server was installed but $server is still not on PATH"
}

# signal_server sends signal $1 to the server's process group (it runs under setsid, so this reaches
# a child rewriting the append-only file too), or to the server alone.
signal_server() {
	kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null || true
}

do_install() {
	local bin
	if bin="$(command -v "$server" 2>/dev/null)"; then
		log "already installed: $bin ($("$bin" --version 2>/dev/null | head -n 1))"
		return 0
	fi
	install_server
	log "installed: $(command -v "$server")"
}

do_stop() {
	local pid
	if ! pid="$(running)"; then
		rm -f "$pidfile"
		log "not running (working dir $workdir)"
		return 0
	fi
	log "stopping pid $pid"
	# TERM: the server flushes and fsyncs the append-only file, then exits (no RDB save: --save "").
	signal_server TERM "$pid"
	if ! wait_gone "$pid" "$stop_timeout"; then
		log "pid $pid still alive after ${stop_timeout}s: KILL"
		signal_server KILL "$pid"
		wait_gone "$pid" 5 || die "pid $pid survived KILL"
	fi
	rm -f "$pidfile"
	log "stopped"
}

do_kill() {
	local pid
	if ! pid="$(running)"; then
		rm -f "$pidfile"
		log "not running (working dir $workdir)"
		return 0
	fi
	log "killing pid $pid (SIGKILL)"
	signal_server KILL "$pid"
	wait_gone "$pid" 5 || die "pid $pid survived KILL"
	rm -f "$pidfile"
	log "killed"
}

do_start() {
	local pid
	if pid="$(running)"; then
		if pong; then
			log "already running: pid $pid, $(url) (working dir $workdir)"
			return 0
		fi
		die "pid $pid from $pidfile is alive but does not answer PING; run: $0 stop"
	fi
	rm -f "$pidfile"

	command -v "$server" >/dev/null 2>&1 || install_server

	if port_open "$client_host" "$port"; then
		# Not ours (ours would have a live pid file): restart, stop and kill could not reach it.
		die "port $port on $client_host is taken by a process not started from $workdir (the system's redis-server service?); stop it, or set REDIS_PORT"
	fi

	mkdir -p "$workdir"
	log "starting $server on $(url) (working dir $workdir, log $logfile)"
	# Every setting on the command line and no config file, so that /etc/redis/redis.conf (system
	# paths, /var/log, supervised systemd) plays no part. Not daemonized: setsid puts it in its own
	# session and process group, so it outlives this shell and stop can signal the whole group; $! is
	# its pid, and it writes the same pid to the pid file itself (and removes the file when it exits
	# on TERM).
	local args=(
		--port "$port"
		--bind "$host"
		--dir "$workdir"
		--daemonize no
		--supervised no
		--pidfile "$pidfile"
		--logfile "$logfile"
		--syslog-enabled no
		--appendonly yes
		--appendfsync everysec
		--save ""
		--protected-mode yes
	)
	# DEBUG SLEEP and the like, from loopback only, so that fault tests can make it stall (Redis 7+
	# has the setting and turns DEBUG off by default; Redis 6 allows DEBUG and knows no such setting).
	local major
	major="$("$server" --version 2>/dev/null | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')"
	if [[ $major =~ ^[0-9]+$ ]] && ((major >= 7)); then
		args+=(--enable-debug-command local)
	fi
	[[ -n $password ]] && args+=(--requirepass "$password")
	: >>"$logfile"
	setsid "$server" "${args[@]}" </dev/null >>"$logfile" 2>&1 &
	pid=$!
	echo "$pid" >"$pidfile"

	local deadline=$((SECONDS + start_timeout))
	until pong; do
		if ! alive "$pid"; then
			rm -f "$pidfile"
			log_tail
			die "$server exited during start"
		fi
		if ((SECONDS >= deadline)); then
			log_tail
			log "no PONG from $client_host:$port after ${start_timeout}s"
			do_stop
			exit 1
		fi
		sleep 0.1
	done
	log "ready: pid $pid, $(url)"
}

do_status() {
	local pid
	if ! pid="$(running)"; then
		log "not running (working dir $workdir)"
		return 3
	fi
	if pong; then
		log "running: pid $pid, $(url) (working dir $workdir)"
		return 0
	fi
	log "pid $pid alive but does not answer PING on $client_host:$port"
	return 1
}

do_cli() {
	local cli
	cli="$(cli_bin)" || die "no redis-cli (package redis-tools)"
	local envs
	mapfile -t envs < <(cli_env)
	exec env "${envs[@]}" "$cli" -h "$client_host" -p "$port" "$@"
}

case "${1:-}" in
start) do_start ;;
install) do_install ;;
stop) do_stop ;;
restart)
	do_stop
	do_start
	;;
kill) do_kill ;;
status) do_status ;;
url) url ;;
cli)
	shift
	do_cli "$@"
	;;
-h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
