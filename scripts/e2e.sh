#!/usr/bin/env bash
# Runs the end-to-end suite (go test -tags e2e ./e2e/...) against a real Phoenix that it starts on
# loopback with a fresh database, and stops afterwards. Extra arguments go to `go test`
# (e.g. scripts/e2e.sh -run TestFeedbackBeforeSpan -v).
#
# Env: E2E_PHOENIX_PORT (default 16006) and E2E_PHOENIX_GRPC_PORT (16007), off the demo's ports so
# both can run at once.
#
# It also starts a Redis (scripts/redis.sh) for the shared index (--redis-url) on E2E_REDIS_PORT
# (default 16379), in a temporary working dir, and stops it afterwards; E2E_REDIS=off skips it. The
# suites get E2E_REDIS_URL (redis://127.0.0.1:PORT/0), E2E_REDIS_PORT, E2E_REDIS_WORKING_DIR and
# E2E_REDIS_SCRIPT, and REDIS_PORT, REDIS_HOST and REDIS_WORKING_DIR are exported too, so that a test
# runs `$E2E_REDIS_SCRIPT restart|stop|kill|start` on that same Redis (as the fault suite runs
# scripts/phoenix.sh on the shared Phoenix).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

"$root/scripts/venv.sh"
# The TypeScript app of the matrix's vercel-ai-sdk cells (npm ci when its lockfile changed).
"$root/scripts/ts-app.sh"
# The browser test's Debian chromium and playwright-core (apt-get and npm ci, each only when missing).
"$root/scripts/browser.sh" install
# schemathesis for e2e/openapi_test.go, in a venv of its own (scripts/schemathesis.sh says why).
"$root/scripts/schemathesis.sh" install

export PHOENIX_PORT="${E2E_PHOENIX_PORT:-16006}"
export PHOENIX_GRPC_PORT="${E2E_PHOENIX_GRPC_PORT:-16007}"
export PHOENIX_HOST=127.0.0.1
PHOENIX_WORKING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/e2e-phoenix.XXXXXX")"
export PHOENIX_WORKING_DIR

redis=on
case "${E2E_REDIS:-on}" in
off | 0 | false | no) redis=off ;;
esac
if [[ $redis == on ]]; then
	export REDIS_PORT="${E2E_REDIS_PORT:-16379}"
	export REDIS_HOST=127.0.0.1
	REDIS_WORKING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/e2e-redis.XXXXXX")"
	export REDIS_WORKING_DIR
	# A REDIS_PASSWORD of the caller's would make the URL below wrong.
	unset REDIS_PASSWORD
fi

stop() {
	"$root/scripts/phoenix.sh" stop || true
	rm -rf "$PHOENIX_WORKING_DIR"
	if [[ $redis == on ]]; then
		"$root/scripts/redis.sh" stop || true
		rm -rf "$REDIS_WORKING_DIR"
	fi
}
trap stop EXIT

if [[ $redis == on ]]; then
	"$root/scripts/redis.sh" start
	export E2E_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	export E2E_REDIS_PORT="$REDIS_PORT"
	export E2E_REDIS_WORKING_DIR="$REDIS_WORKING_DIR"
	export E2E_REDIS_SCRIPT="$root/scripts/redis.sh"
fi
"$root/scripts/phoenix.sh" start
export E2E_PHOENIX_URL="http://127.0.0.1:$PHOENIX_PORT"
export E2E_PYTHON="$root/.venv/bin/python"
E2E_SCHEMATHESIS="$("$root/scripts/schemathesis.sh" path)"
export E2E_SCHEMATHESIS

status=0
# -p 1: one package at a time; the fault suite stops and starts the shared Phoenix (and Redis).
go test -tags e2e -count=1 -p 1 -timeout 25m "${@:-./e2e/...}" || status=$?
if [[ $status -ne 0 ]]; then
	echo "--- last lines of the Phoenix log ($PHOENIX_WORKING_DIR/phoenix.log):" >&2
	tail -n 40 "$PHOENIX_WORKING_DIR/phoenix.log" >&2 || true
	if [[ $redis == on ]]; then
		echo "--- last lines of the Redis log ($REDIS_WORKING_DIR/redis.log):" >&2
		tail -n 20 "$REDIS_WORKING_DIR/redis.log" >&2 || true
	fi
fi
exit $status
