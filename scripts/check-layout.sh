#!/usr/bin/env bash
# Fails when README.md's layout table and `go list ./...` disagree: the same packages, in the same
# order, line for line (issue 15). Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")/.."
module="$(go list -m)"
want="$(go list ./... | sed "s|^$module/\{0,1\}||")"
# The table's rows: between "## Layout" and the next "## ", first cell of each "| `...` |" row.
got="$(awk '/^## Layout$/{on=1; next} /^## /{on=0} on' README.md |
	sed -n 's/^| `\([^`]*\)` |.*/\1/p')"
if [[ "$want" != "$got" ]]; then
	echo "check-layout: README.md's layout table does not match go list ./... (- go list, + README):" >&2
	diff <(echo "$want") <(echo "$got") | sed -n 's/^</-/p; s/^>/+/p' >&2
	exit 1
fi
echo "check-layout: README.md's layout table matches go list ./... ($(echo "$want" | wc -l) packages)"
