#!/usr/bin/env bash
# Compares our proxy with the OpenTelemetry Collector on the same loads, in one run (`make bench`).
#
#   bench/compare.sh            the whole comparison (~25 minutes on 2 cores, once the Collector is built)
#   bench/compare.sh -quick     the LLM-shaped loads of the matrix only (~5 minutes)
#   bench/compare.sh -h         the knobs of the run (duration, rate, sizes, groups, profiles, ...)
#
# It builds our proxy, the load generator (bench/loadgen), the counting sink (bench/sink: OTLP/HTTP,
# OTLP/gRPC, and Phoenix's annotation endpoint) and the profiling harness (bench/proxyprof); builds
# the Collector with the Collector Builder from the Go module proxy (bench/collector/builder-config.yaml,
# pinned; cached in .cache/bench, rebuilt when the manifest or the pin changes; the first build takes
# 3-5 minutes); installs telemetrygen (pinned); then bench/compare runs every system (the proxy with its
# defaults, durable state on; the Collector with and without its batch processor; the generator straight
# into the sink, the floor) under every load into the same sink, measures feedback to annotation under
# load, and writes bench/results/ (results.json, results.md, CPU profiles, logs), the generated section
# of docs/benchmarks.md, and docs/images/cpu-per-span.png (matplotlib, in its own venv
# .cache/bench/venv; skipped with a warning when it cannot be installed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Pins. The Builder's version must match the components' in builder-config.yaml.
BUILDER_VERSION=v0.165.0
TELEMETRYGEN_VERSION=v0.161.0

cache="$root/.cache/bench"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf 'compare.sh: %s\n' "$*" >&2; }

log "building the proxy, loadgen, sink, proxyprof and compare"
go build -o "$bin/proxy" ./cmd/proxy
for cmd in loadgen sink proxyprof compare; do
	go build -o "$bin/$cmd" "./bench/$cmd"
done

# Where compare writes (its -out and -doc flags), for the plot.
out=bench/results
png=docs/images/cpu-per-span.png
prev=
for arg in "$@"; do
	case "$arg" in
	-h | -help | --help) exec "$bin/compare" -h ;;
	-out=* | --out=*) out="${arg#*=}" ;;
	-doc= | --doc=) png= ;;
	esac
	case "$prev" in
	-out | --out) out="$arg" ;;
	-doc | --doc) [[ -z "$arg" ]] && png= ;;
	esac
	prev="$arg"
done
[[ -n "$png" ]] || png="$out/cpu-per-span.png"

manifest=bench/collector/builder-config.yaml
stamp="$BUILDER_VERSION $(sha256sum "$manifest" | cut -d' ' -f1)"
if [[ ! -x "$bin/otelcol-bench" || "$(cat "$cache/otelcol.stamp" 2>/dev/null)" != "$stamp" ]]; then
	log "building the Collector with the Collector Builder $BUILDER_VERSION (first time: 3-5 minutes)"
	start=$SECONDS
	GOBIN="$bin" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
	rm -rf "$cache/otelcol-src"
	"$bin/builder" --config "$manifest" --output-path "$cache/otelcol-src" >"$cache/builder.log" 2>&1 ||
		{ tail -20 "$cache/builder.log" >&2; exit 1; }
	cp "$cache/otelcol-src/otelcol-bench" "$bin/otelcol-bench"
	echo "$stamp" >"$cache/otelcol.stamp"
	log "Collector built in $((SECONDS - start)) s"
fi

if [[ ! -x "$bin/telemetrygen" || "$(cat "$cache/telemetrygen.stamp" 2>/dev/null)" != "$TELEMETRYGEN_VERSION" ]]; then
	log "installing telemetrygen $TELEMETRYGEN_VERSION"
	if GOBIN="$bin" go install "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION"; then
		echo "$TELEMETRYGEN_VERSION" >"$cache/telemetrygen.stamp"
	else
		log "warning: telemetrygen did not install; its runs are skipped"
		rm -f "$bin/telemetrygen"
	fi
fi

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- cmd pkg go.mod go.sum 2>/dev/null)" ]]; then
	commit+=" with uncommitted changes"
fi
"$bin/compare" -bin "$bin" -commit "$commit" -collector-version "$BUILDER_VERSION (otlp receiver, batch processor, otlp_http exporter)" "$@"

venv="$cache/venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
	log "installing matplotlib into $venv (bench/requirements-plot.txt)"
	python3 -m venv "$venv" && "$venv/bin/pip" install -q -r bench/requirements-plot.txt ||
		log "warning: matplotlib did not install; no plot"
fi
if "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
	mkdir -p "$(dirname "$png")"
	"$venv/bin/python" bench/plot.py "$out/results.json" "$png"
	log "wrote $png"
fi
