#!/usr/bin/env bash
# Installs schemathesis, which e2e/openapi_test.go runs against a whole proxy to check that the
# feedback API answers as its OpenAPI document (pkg/feedback/openapi.json) says.
#
#   scripts/schemathesis.sh install   create .cache/schemathesis/venv from
#                                     scripts/schemathesis-requirements.txt, or reinstall it when the
#                                     file or the interpreter changed; otherwise does nothing (fast,
#                                     no network)
#   scripts/schemathesis.sh path      print the path of the schemathesis command (exit 1 when the
#                                     venv is missing or stale: run install)
#   scripts/schemathesis.sh freeze    resolve the schemathesis pin of the requirements file in a
#                                     temporary venv and rewrite the other pins from what it installed
#
# Env: PYTHON (default python3). scripts/e2e.sh runs `install` and hands the tests the command's path
# as E2E_SCHEMATHESIS.
#
# Why a venv of its own rather than .venv: .venv's pins (scripts/constraints.txt) are what Phoenix and
# the instrumentations resolve to, and schemathesis brings pytest, hypothesis, werkzeug and its own
# ranges of requests, click, rich and urllib3. In one venv an upgrade of Phoenix would wait on
# schemathesis's ranges and the other way round; apart, each is pinned and upgraded on its own.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.cache/schemathesis/venv"
req="$root/scripts/schemathesis-requirements.txt"
stamp="$venv/.inputs.sha256"
python="${PYTHON:-python3}"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# want is the stamp of an up-to-date venv: the requirements and the interpreter's version.
want() {
	{
		"$python" -c 'import sys; print(sys.version.split()[0])'
		cat "$req"
	} | sha256sum | cut -d' ' -f1
}

up_to_date() {
	[[ -x $venv/bin/schemathesis && -f $stamp && "$(cat "$stamp")" == "$(want)" ]]
}

install() {
	command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3"
	[[ -f $req ]] || die "missing $req"
	mkdir -p "$(dirname "$venv")"
	# One installer at a time: two suites may find the venv missing at once.
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$(dirname "$venv")/install.lock"
		flock 9
	fi
	up_to_date && return 0
	# A venv of another interpreter cannot be repaired in place; a fresh one is quick.
	rm -rf "$venv"
	log "creating $venv with $("$python" --version 2>&1)"
	"$python" -m venv "$venv"
	local pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
	log "installing scripts/schemathesis-requirements.txt"
	"${pip[@]}" install -r "$req"
	"${pip[@]}" check >&2 || die "pip check reports conflicts among the pins of $req: run $0 freeze"
	want >"$stamp"
	log "installed: $("$venv/bin/schemathesis" --version)"
}

freeze() {
	local pin tmp
	pin="$(grep -E '^schemathesis==' "$req")" || die "$req has no schemathesis==<version> line"
	tmp="$(mktemp -d)"
	# shellcheck disable=SC2064 # $tmp is local: expand it now, not at exit
	trap "rm -rf '$tmp'" EXIT
	log "resolving $pin in a temporary venv"
	"$python" -m venv "$tmp/venv"
	"$tmp/venv/bin/python" -m pip --disable-pip-version-check --quiet install "$pin"
	{
		grep '^#' "$req"
		echo "$pin"
		"$tmp/venv/bin/python" -m pip freeze --disable-pip-version-check | grep -v -i '^schemathesis=='
	} >"$tmp/req"
	mv "$tmp/req" "$req"
	log "wrote $req ($(grep -c '==' "$req") pins); run $0 install"
}

case "${1:-}" in
install) install ;;
path)
	up_to_date || die "$venv is missing or stale: run $0 install"
	echo "$venv/bin/schemathesis"
	;;
freeze) freeze ;;
-h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
