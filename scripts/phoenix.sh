#!/usr/bin/env bash
# Runs a real Arize Phoenix from .venv on loopback, for tests and the demo.
#
#   scripts/phoenix.sh start    start in the background, wait until GET /healthz answers OK
#   scripts/phoenix.sh stop     stop the instance started from the same working dir
#   scripts/phoenix.sh status   exit 0 when running and healthy, 3 when not running, 1 when unhealthy
#   scripts/phoenix.sh url      print the REST base URL (http://HOST:PORT)
#
# Env (defaults):
#   PHOENIX_PORT=6006            UI, REST and OTLP/HTTP (POST /v1/traces)
#   PHOENIX_GRPC_PORT=4319       OTLP/gRPC; not 4317, which belongs to our proxy
#   PHOENIX_HOST=127.0.0.1       HTTP bind address (Phoenix's own default is 0.0.0.0)
#   PHOENIX_WORKING_DIR=.phoenix/<PHOENIX_PORT> under the repo root: SQLite DB, pid file, log
#   PHOENIX_START_TIMEOUT=90     seconds to wait for /healthz
#   PHOENIX_STOP_TIMEOUT=20      seconds between TERM and KILL
# Phoenix's telemetry pixels and its other internet fetches (fonts, WASM sandbox) are turned off.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

port="${PHOENIX_PORT:-6006}"
grpc_port="${PHOENIX_GRPC_PORT:-4319}"
host="${PHOENIX_HOST:-127.0.0.1}"
workdir="${PHOENIX_WORKING_DIR:-$root/.phoenix/$port}"
start_timeout="${PHOENIX_START_TIMEOUT:-90}"
stop_timeout="${PHOENIX_STOP_TIMEOUT:-20}"

pidfile="$workdir/phoenix.pid"
logfile="$workdir/phoenix.log"

# A client reaches a wildcard bind through loopback.
case "$host" in
0.0.0.0 | :: | "[::]") client_host=127.0.0.1 ;;
*:*) client_host="[$host]" ;;
*) client_host="$host" ;;
esac
url="http://$client_host:$port"

log() { printf 'phoenix.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# healthy succeeds when GET /healthz answers 200 with body OK.
healthy() {
	local body
	if command -v curl >/dev/null 2>&1; then
		body="$(curl -fsS --max-time 2 "$url/healthz" 2>/dev/null)" || return 1
	else
		body="$(python3 - "$url/healthz" 2>/dev/null <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    print(r.read().decode())
EOF
		)" || return 1
	fi
	[[ $body == OK* ]]
}

# port_open succeeds when something accepts TCP connections on host:port.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# running prints the pid from the pid file when that process is alive and is a Phoenix: a pid
# file left behind by a crash may name a pid the OS has since given to something else.
running() {
	local pid
	[[ -f $pidfile ]] || return 1
	pid="$(cat "$pidfile" 2>/dev/null)"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q phoenix; then
		return 1
	fi
	echo "$pid"
}

log_tail() {
	[[ -f $logfile ]] || return 0
	log "last lines of $logfile:"
	tail -n 40 "$logfile" >&2
}

# wait_gone waits up to $2 seconds for pid $1 to exit.
wait_gone() {
	local deadline=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

do_stop() {
	local pid
	if ! pid="$(running)"; then
		rm -f "$pidfile"
		log "not running (working dir $workdir)"
		return 0
	fi
	log "stopping pid $pid"
	# The server runs in its own process group (setsid), so this reaches any workers too.
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" "$stop_timeout"; then
		log "pid $pid still alive after ${stop_timeout}s: KILL"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 5 || die "pid $pid survived KILL"
	fi
	rm -f "$pidfile"
	log "stopped"
}

do_start() {
	local pid
	if pid="$(running)"; then
		if healthy; then
			log "already running: pid $pid, $url (working dir $workdir)"
			return 0
		fi
		die "pid $pid from $pidfile is alive but $url/healthz does not answer OK; run: $0 stop"
	fi
	rm -f "$pidfile"
	if port_open "$client_host" "$port"; then
		if healthy; then
			log "a Phoenix not started from $workdir already answers on $url; using it (stop will not stop it)"
			return 0
		fi
		die "port $port on $host is taken by something that is not Phoenix; set PHOENIX_PORT"
	fi
	# gRPC binds [::]:PORT whatever PHOENIX_HOST says, and with SO_REUSEPORT it could share a port
	# silently, so check it here.
	if port_open 127.0.0.1 "$grpc_port"; then
		die "gRPC port $grpc_port is taken; set PHOENIX_GRPC_PORT"
	fi

	if [[ ! -x $venv/bin/phoenix ]]; then
		log "no Phoenix in $venv: running scripts/venv.sh"
		"$root/scripts/venv.sh"
	fi

	mkdir -p "$workdir"
	log "starting Phoenix on $url (gRPC :$grpc_port, working dir $workdir, log $logfile)"
	: >"$logfile"
	# setsid: own session and process group, so the server outlives this shell and stop can signal
	# the whole group. Env wins over anything Phoenix reads from the caller's environment.
	PHOENIX_PORT="$port" \
		PHOENIX_GRPC_PORT="$grpc_port" \
		PHOENIX_HOST="$host" \
		PHOENIX_WORKING_DIR="$workdir" \
		PHOENIX_TELEMETRY_ENABLED=false \
		PHOENIX_ALLOW_EXTERNAL_RESOURCES=false \
		setsid "$venv/bin/phoenix" serve </dev/null >>"$logfile" 2>&1 &
	pid=$!
	echo "$pid" >"$pidfile"

	local deadline=$((SECONDS + start_timeout))
	until healthy; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			log_tail
			die "Phoenix exited during start"
		fi
		if ((SECONDS >= deadline)); then
			log_tail
			log "no OK from $url/healthz after ${start_timeout}s"
			do_stop
			exit 1
		fi
		sleep 0.5
	done
	log "ready: pid $pid, $url"
}

do_status() {
	local pid
	if ! pid="$(running)"; then
		log "not running (working dir $workdir)"
		return 3
	fi
	if healthy; then
		log "running: pid $pid, $url (working dir $workdir)"
		return 0
	fi
	log "pid $pid alive but $url/healthz does not answer OK"
	return 1
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
url) echo "$url" ;;
-h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
