#!/usr/bin/env bash
# Runs the end-to-end suite (go test -tags e2e ./e2e/...) against a real Phoenix that it starts on
# loopback with a fresh database, and stops afterwards. Extra arguments go to `go test`
# (e.g. scripts/e2e.sh -run TestFeedbackBeforeSpan -v).
#
# Env: E2E_PHOENIX_PORT (default 16006) and E2E_PHOENIX_GRPC_PORT (16007), off the demo's ports so
# both can run at once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

"$root/scripts/venv.sh"

export PHOENIX_PORT="${E2E_PHOENIX_PORT:-16006}"
export PHOENIX_GRPC_PORT="${E2E_PHOENIX_GRPC_PORT:-16007}"
export PHOENIX_HOST=127.0.0.1
PHOENIX_WORKING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/e2e-phoenix.XXXXXX")"
export PHOENIX_WORKING_DIR

stop() {
	"$root/scripts/phoenix.sh" stop || true
	rm -rf "$PHOENIX_WORKING_DIR"
}
trap stop EXIT

"$root/scripts/phoenix.sh" start
export E2E_PHOENIX_URL="http://127.0.0.1:$PHOENIX_PORT"
export E2E_PYTHON="$root/.venv/bin/python"

status=0
# -p 1: one package at a time; the fault suite stops and starts the shared Phoenix.
go test -tags e2e -count=1 -p 1 -timeout 25m "${@:-./e2e/...}" || status=$?
if [[ $status -ne 0 ]]; then
	echo "--- last lines of the Phoenix log ($PHOENIX_WORKING_DIR/phoenix.log):" >&2
	tail -n 40 "$PHOENIX_WORKING_DIR/phoenix.log" >&2 || true
fi
exit $status
