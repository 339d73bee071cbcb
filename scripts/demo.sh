#!/usr/bin/env bash
# make demo: the whole story on one machine, on loopback. Creates .venv with the pinned Phoenix if
# missing (scripts/venv.sh), starts Phoenix (scripts/phoenix.sh), builds and starts the proxy
# (bin/proxy), runs the demo app (bin/demo --feedback) against them, and prints where to look.
#
# On a terminal the demo asks "Are you satisfied? (y/n)", then Phoenix and the proxy stay up until
# Ctrl-C. Otherwise it answers y and stops everything at once, unless DEMO_HOLD=1 (then it holds
# until SIGINT or SIGTERM). A Phoenix or a proxy already running from this checkout is reused and
# left running.
#
# Env (defaults):
#   PHOENIX_PORT=6006 PHOENIX_GRPC_PORT=4319            Phoenix (see scripts/phoenix.sh)
#   PROXY_OTLP_GRPC_PORT=4317 PROXY_OTLP_HTTP_PORT=4318  where the app exports spans
#   PROXY_FEEDBACK_PORT=8080 PROXY_ADMIN_PORT=8888       POST /feedback; /metrics, /healthz, /readyz
#   DEMO_HOLD=0        1: keep Phoenix and the proxy up after the demo even when not on a terminal
#   DEMO_ANSWER        y or n: answer without asking, even on a terminal
#   DEMO_OPENAI=0      1: let the demo use OPENAI_API_KEY / OPENAI_BASE_URL instead of the built-in LLM
#   DEMO_STATE_DIR=.cache/demo   the proxy's log and pid file, the demo's output
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export PHOENIX_PORT="${PHOENIX_PORT:-6006}"
export PHOENIX_GRPC_PORT="${PHOENIX_GRPC_PORT:-4319}"
export PHOENIX_HOST="${PHOENIX_HOST:-127.0.0.1}"
grpc_port="${PROXY_OTLP_GRPC_PORT:-4317}"
http_port="${PROXY_OTLP_HTTP_PORT:-4318}"
feedback_port="${PROXY_FEEDBACK_PORT:-8080}"
admin_port="${PROXY_ADMIN_PORT:-8888}"
state="${DEMO_STATE_DIR:-$root/.cache/demo}"
hold="${DEMO_HOLD:-0}"

phoenix_url="http://127.0.0.1:$PHOENIX_PORT"
phoenix_ui="http://localhost:$PHOENIX_PORT"
feedback_url="http://127.0.0.1:$feedback_port"
admin_url="http://127.0.0.1:$admin_port"
proxy_pidfile="$state/proxy.pid"
proxy_log="$state/proxy.log"
demo_log="$state/demo.log"

# say prints a step, in bold on a terminal.
if [[ -t 2 ]]; then
	say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
	say() { printf '==> %s\n' "$*" >&2; }
fi
log() { printf 'demo.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# http_get prints the body of a 200 answer and fails otherwise (curl, or Python on a bare machine).
http_get() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 2 "$1" 2>/dev/null
	else
		python3 - "$1" 2>/dev/null <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.stdout.write(r.read().decode())
EOF
	fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_owner names the process listening on a port, when ss can tell.
port_owner() {
	local owner=""
	if command -v ss >/dev/null 2>&1; then
		owner="$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*' | head -n1 | sed 's/users:((//')"
	fi
	printf '%s' "${owner:-another process}"
}

# port_taken explains how to free or move a port and exits.
port_taken() {
	local port="$1" what="$2" var="$3"
	die "port $port ($what) is taken by $(port_owner "$port"). Stop that process (ss -ltnp 'sport = :$port' shows it), or move the demo's port: $var=<free port> make demo"
}

# proxy_running prints the pid of a proxy started by an earlier run of this script that still answers.
proxy_running() {
	local pid
	[[ -f $proxy_pidfile ]] || return 1
	pid="$(cat "$proxy_pidfile" 2>/dev/null)"
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'bin/proxy'; then
		return 1
	fi
	[[ "$(http_get "$admin_url/readyz" || true)" == ready* ]] || return 1
	echo "$pid"
}

started_phoenix=0
started_proxy=0
proxy_pid=""
cleaned=0

cleanup() {
	((cleaned)) && return 0
	cleaned=1
	# A second signal (make passes SIGTERM on to its children) must not cut the cleanup short.
	trap '' INT TERM
	if ((started_proxy)) && [[ -n $proxy_pid ]]; then
		say "stopping the proxy (pid $proxy_pid)"
		kill -TERM "$proxy_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$proxy_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$proxy_pid" 2>/dev/null || true
		rm -f "$proxy_pidfile"
	fi
	if ((started_phoenix)); then
		say "stopping Phoenix"
		scripts/phoenix.sh stop || true
	fi
}
trap cleanup EXIT
holding=0
# Ctrl-C is how a held demo ends: no error then.
trap 'if ((holding)); then exit 0; else exit 130; fi' INT
trap 'exit 143' TERM

command -v go >/dev/null 2>&1 || die "go not found: install Go 1.26 (https://go.dev/dl/)"
command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.11 for Phoenix"
mkdir -p "$state" bin

# Ports first, so a conflict costs seconds, not a venv. A proxy or Phoenix of ours is reused.
if pid="$(proxy_running)"; then
	proxy_pid="$pid"
else
	for p in "$grpc_port:the proxy's OTLP/gRPC receiver:PROXY_OTLP_GRPC_PORT" \
		"$http_port:the proxy's OTLP/HTTP receiver:PROXY_OTLP_HTTP_PORT" \
		"$feedback_port:the proxy's feedback API:PROXY_FEEDBACK_PORT" \
		"$admin_port:the proxy's admin listener:PROXY_ADMIN_PORT"; do
		IFS=: read -r port what var <<<"$p"
		port_open "$port" && port_taken "$port" "$what" "$var"
	done
fi
phoenix_ours=0
scripts/phoenix.sh status >/dev/null 2>&1 && phoenix_ours=1
if ((!phoenix_ours)) && port_open "$PHOENIX_PORT" && [[ "$(http_get "$phoenix_url/healthz" || true)" != OK* ]]; then
	port_taken "$PHOENIX_PORT" "Phoenix's UI and REST API" PHOENIX_PORT
fi
if ((!phoenix_ours)) && ! port_open "$PHOENIX_PORT" && port_open "$PHOENIX_GRPC_PORT"; then
	port_taken "$PHOENIX_GRPC_PORT" "Phoenix's OTLP/gRPC receiver" PHOENIX_GRPC_PORT
fi

say "Python venv with the pinned Phoenix (scripts/venv.sh; the first time takes a few minutes)"
scripts/venv.sh

say "building bin/proxy and bin/demo"
go build -o bin/proxy ./cmd/proxy
go build -o bin/demo ./cmd/demo

if ((phoenix_ours)); then
	say "Phoenix already running from this checkout: reusing it"
else
	say "starting Phoenix on $phoenix_ui (gRPC :$PHOENIX_GRPC_PORT, off the proxy's 4317)"
	started_phoenix=1
	scripts/phoenix.sh start
	# A healthy Phoenix on the port that is not ours is used as is, and left running (phoenix.sh).
	scripts/phoenix.sh status >/dev/null 2>&1 || started_phoenix=0
fi

if [[ -n $proxy_pid ]]; then
	say "proxy already running from this checkout (pid $proxy_pid): reusing it"
else
	say "starting the proxy: OTLP :$grpc_port (gRPC) :$http_port (HTTP), feedback :$feedback_port, admin :$admin_port"
	: >"$proxy_log"
	# Its own session: Ctrl-C reaches this script, which stops the proxy after the demo is done.
	setsid bin/proxy \
		--otlp-grpc-addr "127.0.0.1:$grpc_port" \
		--otlp-http-addr "127.0.0.1:$http_port" \
		--feedback-addr "127.0.0.1:$feedback_port" \
		--admin-addr "127.0.0.1:$admin_port" \
		--phoenix-otlp-endpoint "$phoenix_url/v1/traces" \
		--phoenix-url "$phoenix_url" \
		--data-dir "$state/proxy-data" \
		</dev/null >>"$proxy_log" 2>&1 &
	proxy_pid=$!
	started_proxy=1
	echo "$proxy_pid" >"$proxy_pidfile"
	for _ in $(seq 1 150); do
		[[ "$(http_get "$admin_url/readyz" || true)" == ready* ]] && break
		if ! kill -0 "$proxy_pid" 2>/dev/null; then
			tail -n 20 "$proxy_log" >&2
			die "the proxy exited during start (log: $proxy_log)"
		fi
		sleep 0.1
	done
	[[ "$(http_get "$admin_url/readyz" || true)" == ready* ]] || die "the proxy is not ready after 15s: see $proxy_log"
fi

# The demo talks to the built-in LLM and to this proxy, whatever the caller's shell exports.
unset OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_PROTOCOL OTEL_EXPORTER_OTLP_HEADERS OTEL_EXPORTER_OTLP_TRACES_HEADERS
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$http_port" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
if [[ ${DEMO_OPENAI:-0} != 1 ]]; then
	if [[ -n ${OPENAI_API_KEY:-}${OPENAI_BASE_URL:-} ]]; then
		log "OPENAI_API_KEY/OPENAI_BASE_URL ignored: the demo uses its built-in LLM (DEMO_OPENAI=1 make demo to use yours)"
	fi
	unset OPENAI_API_KEY OPENAI_BASE_URL
fi

interactive=0
[[ -t 0 && -t 1 ]] && interactive=1
answer=()
if [[ -n ${DEMO_ANSWER:-} ]]; then
	answer=(--answer "$DEMO_ANSWER")
elif ((!interactive)); then
	answer=(--answer y)
fi
unset DEMO_ANSWER

say "running the demo app: bin/demo --feedback ${answer[*]}"
set +e
bin/demo --feedback "${answer[@]}" \
	--feedback-url "$feedback_url" --phoenix-url "$phoenix_url" --phoenix-ui-url "$phoenix_ui" |
	tee "$demo_log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
	log "the demo failed (exit $status); the proxy's log ($proxy_log) ends with:"
	tail -n 20 "$proxy_log" >&2 || true
	exit "$status"
fi

span_url="$(sed -n 's/^Phoenix: *//p' "$demo_log" | head -n1)"
# Not anchored: on a terminal the answer to "Are you satisfied? (y/n) " is typed on the prompt's line,
# so the proxy's first line follows the prompt in the log.
response_id="$(sed -n 's/.*Proxy: *feedback on \([^ ]*\) is annotated.*/\1/p' "$demo_log" | head -n1)"
cat >&2 <<EOF

Where to look:
  the annotated span   $span_url
                       (Annotations tab: "user feedback", thumbs-up or thumbs-down)
  Phoenix              $phoenix_ui/projects
  the proxy's view     curl $feedback_url/feedback/$response_id
  the proxy's metrics  $admin_url/metrics
  logs                 $proxy_log, .phoenix/$PHOENIX_PORT/phoenix.log
(ready in ${SECONDS}s)

EOF

if ((interactive)) || [[ $hold == 1 ]]; then
	say "Phoenix and the proxy are up: press Ctrl-C to stop them"
	holding=1
	# sleep in the background so that the traps run as soon as a signal arrives.
	while :; do
		sleep 3600 &
		wait $! || true
	done
fi
