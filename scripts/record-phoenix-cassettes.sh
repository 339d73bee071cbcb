#!/usr/bin/env bash
# Re-records pkg/phoenix/testdata/cassettes/*.yaml from a real, fresh Phoenix.
#
#   scripts/record-phoenix-cassettes.sh [go test -run pattern, default TestVCR]
#
# Starts a throwaway Phoenix (scripts/phoenix.sh, free ports, empty working dir under /tmp), runs
# the recorded tests in record mode against it (they export their seed spans to it first), stops
# it, then runs the package tests again offline to prove the new cassettes replay.
# A Phoenix that fails to start leaves its working dir (with phoenix.log) for a look.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pattern="${1:-TestVCR}"

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PHOENIX_HOST=127.0.0.1
PHOENIX_PORT="$(free_port)"
PHOENIX_GRPC_PORT="$(free_port)"
while [[ $PHOENIX_GRPC_PORT == "$PHOENIX_PORT" ]]; do PHOENIX_GRPC_PORT="$(free_port)"; done
PHOENIX_WORKING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/phoenix-record.XXXXXX")"
export PHOENIX_HOST PHOENIX_PORT PHOENIX_GRPC_PORT PHOENIX_WORKING_DIR

cleanup() {
	"$root/scripts/phoenix.sh" stop || true
	if [[ ${keep_workdir:-0} == 1 ]]; then
		echo "record: kept $PHOENIX_WORKING_DIR" >&2
	else
		rm -rf "$PHOENIX_WORKING_DIR"
	fi
}
keep_workdir=1
trap cleanup EXIT

"$root/scripts/phoenix.sh" start
keep_workdir=0
url="$("$root/scripts/phoenix.sh" url)"

cd "$root"
echo "record: recording '$pattern' from $url" >&2
PHOENIX_RECORD=1 PHOENIX_URL="$url" go test ./pkg/phoenix/ -run "$pattern" -count=1 -v

"$root/scripts/phoenix.sh" stop
echo "record: replaying offline" >&2
go test ./pkg/phoenix/ -count=1
