#!/usr/bin/env bash
# make demo-web: the feedback widget in a browser. Runs `make demo` (scripts/demo.sh: Phoenix, the
# proxy and the command-line demo, held up afterwards) with per-response tokens and CORS turned on for
# the page, then serves the demo's chat page (bin/demo web) until Ctrl-C: open the printed URL, ask a
# question, and click a thumb under the answer; the vote lands on the answer's LLM span in Phoenix.
#
# The token keys are made once, in $DEMO_STATE_DIR/token-keys.txt, and so is a server token
# (--feedback-token, in $DEMO_STATE_DIR/feedback-token.txt), so that the page can vote only with the
# per-response tokens it is given. A proxy still running from an earlier `make demo` lacks them: this
# script says so and stops; stop that proxy first.
#
# Env (defaults): DEMO_WEB_PORT=8090 (the page), plus those of scripts/demo.sh (PROXY_FEEDBACK_PORT=8080,
# PHOENIX_PORT=6006, DEMO_STATE_DIR=.cache/demo, ...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

state="${DEMO_STATE_DIR:-$root/.cache/demo}"
web_port="${DEMO_WEB_PORT:-8090}"
feedback_port="${PROXY_FEEDBACK_PORT:-8080}"
feedback_url="http://127.0.0.1:$feedback_port"
keys="$state/token-keys.txt"
server_token="$state/feedback-token.txt"
origins="http://127.0.0.1:$web_port,http://localhost:$web_port"
demo_out="$state/demo-web-setup.log"

log() { printf 'demo-web.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open "$web_port" && die "port $web_port (the chat page) is taken; move it: DEMO_WEB_PORT=<free port> make demo-web"

mkdir -p "$state"
# 32 random bytes in hex: the proxy's minimum key size.
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
if [[ ! -s $keys ]]; then
	(umask 077 && random_hex >"$keys" && echo >>"$keys")
	log "made a token key: $keys"
fi
if [[ ! -s $server_token ]]; then
	(umask 077 && random_hex >"$server_token")
fi
# The proxy and the command-line demo both read it (the page never sees it).
FEEDBACK_PROXY_FEEDBACK_TOKEN="$(cat "$server_token")"
export FEEDBACK_PROXY_FEEDBACK_TOKEN

setup_pid=""
cleanup() {
	trap '' INT TERM
	if [[ -n $setup_pid ]] && kill -0 "$setup_pid" 2>/dev/null; then
		# demo.sh stops the Phoenix and the proxy it started.
		kill -TERM -- "-$setup_pid" 2>/dev/null || true
		wait "$setup_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 0' INT
trap 'exit 143' TERM

log "running make demo with tokens and CORS for $origins (output: $demo_out)"
: >"$demo_out"
setsid env DEMO_HOLD=1 DEMO_ANSWER=y FEEDBACK_PROXY_TOKEN_KEYS_FILE="$keys" \
	FEEDBACK_PROXY_CORS_ALLOWED_ORIGINS="$origins" scripts/demo.sh </dev/null >"$demo_out" 2>&1 &
setup_pid=$!
until grep -q 'press Ctrl-C to stop' "$demo_out"; do
	if ! kill -0 "$setup_pid" 2>/dev/null; then
		tail -n 30 "$demo_out" >&2
		die "make demo ended before it was ready"
	fi
	sleep 1
done

# A proxy reused from an earlier make demo has no CORS for the page: its preflight is refused.
code="$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS "$feedback_url/feedback" \
	-H "Origin: http://127.0.0.1:$web_port" -H 'Access-Control-Request-Method: POST' \
	-H 'Access-Control-Request-Headers: authorization,content-type' || true)"
if [[ $code != 2* ]]; then
	die "the proxy on :$feedback_port refuses the page's origin (preflight answered $code): it is one from an earlier make demo, without --cors-allowed-origins; stop it (kill \$(cat $state/proxy.pid)) and run make demo-web again"
fi

unset OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_PROTOCOL OPENAI_API_KEY OPENAI_BASE_URL
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:${PROXY_OTLP_HTTP_PORT:-4318}" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
log "serving the chat page; Ctrl-C stops it, the proxy and Phoenix (the server token: $server_token)"
bin/demo web --addr "127.0.0.1:$web_port" --feedback-url "$feedback_url" --token-keys-file "$keys"
