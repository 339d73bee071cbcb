#!/usr/bin/env bash
# Installs what the end-to-end suite's browser test (e2e/browser_test.go) needs: Debian's chromium,
# and the Node script that drives it (e2e/browser: playwright-core, exactly as its package-lock.json
# pins it). playwright-core downloads no browser; it drives the chromium that apt-get installs.
#
#   scripts/browser.sh install   install chromium with apt-get when it is missing (with sudo when not
#                                root), and run `npm ci` in e2e/browser when its node_modules is missing
#                                or was installed from another lockfile; otherwise does nothing (fast)
#   scripts/browser.sh path      print the path of the chromium binary (exit 1 when not installed)
#
# Env (defaults):
#   CHROMIUM=chromium            the browser binary (a Chrome or Chromium on PATH, or a path)
# Needs Node 20+ and npm. scripts/e2e.sh runs `scripts/browser.sh install` before `go test`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/e2e/browser"
stamp="$dir/node_modules/.e2e-lock.sha256"
chromium="${CHROMIUM:-chromium}"

log() { printf 'browser.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

install_chromium() {
	command -v "$chromium" >/dev/null 2>&1 && return 0
	local sudo=()
	command -v apt-get >/dev/null 2>&1 ||
		die "$chromium is not installed and there is no apt-get: install Chromium, or set CHROMIUM to a Chrome or Chromium binary"
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 ||
			die "$chromium is not installed, and installing it needs root: apt-get install -y --no-install-recommends chromium"
		sudo=(sudo)
	fi
	log "$chromium not found: installing Debian's chromium with apt-get"
	local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
	if ! "${install[@]}" >&2; then
		log "apt-get install failed; updating the package lists and trying again"
		"${sudo[@]}" apt-get update -qq >&2 && "${install[@]}" >&2 ||
			die "could not install chromium; install it (apt-get install -y --no-install-recommends chromium) and run $0 install again"
	fi
	command -v "$chromium" >/dev/null 2>&1 || die "chromium was installed but $chromium is still not on PATH"
	log "installed: $("$chromium" --version 2>/dev/null || command -v "$chromium")"
}

install_node_modules() {
	local want
	want="$(sha256sum "$dir/package-lock.json" "$dir/package.json" | sha256sum | cut -d' ' -f1)"
	if [[ -d $dir/node_modules/playwright-core && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
		return 0
	fi
	command -v npm >/dev/null 2>&1 || die "npm not found; the browser test needs Node 20+ and npm"
	log "npm ci in e2e/browser"
	# playwright-core has no install script that downloads a browser; the flag makes sure of it.
	(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
	echo "$want" >"$stamp"
}

case "${1:-}" in
install)
	install_chromium
	install_node_modules
	;;
path)
	command -v "$chromium" 2>/dev/null || die "$chromium is not installed: run $0 install"
	;;
-h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
