#!/usr/bin/env bash
# Installs the end-to-end suite's TypeScript app (e2e/apps/ts: the Vercel AI SDK and the
# OpenTelemetry JS SDK) exactly as its package-lock.json pins it, with `npm ci`, when its
# node_modules is missing or was installed from another lockfile; otherwise does nothing (fast).
# Needs Node 20+ and npm. scripts/e2e.sh runs it before `go test`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
app="$root/e2e/apps/ts"
stamp="$app/node_modules/.e2e-lock.sha256"

want="$(sha256sum "$app/package-lock.json" "$app/package.json" | sha256sum | cut -d' ' -f1)"
if [[ -x $app/node_modules/.bin/tsx && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
	exit 0
fi
if ! command -v npm >/dev/null; then
	echo "ts-app.sh: npm not found; the TypeScript app of the e2e suite needs Node 20+ and npm" >&2
	exit 1
fi
echo "ts-app.sh: npm ci in e2e/apps/ts" >&2
(cd "$app" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" >"$stamp"
