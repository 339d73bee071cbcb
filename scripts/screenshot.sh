#!/usr/bin/env bash
# make screenshot: retakes docs/images/phoenix-annotated-span.png from a real run of the demo.
#
# Installs Debian's chromium if missing (apt-get), runs `DEMO_HOLD=1 make demo` in the background
# (it reuses a Phoenix and a proxy already running from this checkout, and then leaves them
# running), opens the annotated span's page in headless Chromium, opens its Annotations section,
# saves the PNG, and stops what it started.
#
# Chromium is driven over the DevTools protocol (on loopback) by the venv's Python (websockets, a
# Phoenix dependency), so that the shot waits for the annotation to be on the page and shows its
# label (a click on the annotation opens its popover). When that fails, a plain
# `chromium --screenshot` after a fixed render time is taken instead.
#
# Env (defaults):
#   SCREENSHOT_OUT=docs/images/phoenix-annotated-span.png
#   SCREENSHOT_SIZE=1400,900      viewport, the PNG's size in pixels
#   SCREENSHOT_TIMEOUT=900        seconds for make demo to be ready (a first run builds the venv)
#   CHROMIUM=chromium
# plus the ports of scripts/demo.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out="${SCREENSHOT_OUT:-docs/images/phoenix-annotated-span.png}"
size="${SCREENSHOT_SIZE:-1400,900}"
timeout="${SCREENSHOT_TIMEOUT:-900}"
chromium="${CHROMIUM:-chromium}"
state="${DEMO_STATE_DIR:-$root/.cache/demo}"
demo_out="$state/screenshot-demo.log"

log() { printf 'screenshot.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if ! command -v "$chromium" >/dev/null 2>&1; then
	log "installing Debian's chromium (apt-get)"
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
	command -v "$chromium" >/dev/null 2>&1 || die "$chromium still not found after apt-get install chromium"
fi

mkdir -p "$state" "$(dirname "$out")"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/screenshot.XXXXXX")"
demo_pid=""
chrome_pid=""

cleanup() {
	trap '' INT TERM
	if [[ -n $chrome_pid ]]; then
		kill -TERM "$chrome_pid" 2>/dev/null || true
		wait "$chrome_pid" 2>/dev/null || true
	fi
	if [[ -n $demo_pid ]] && kill -0 "$demo_pid" 2>/dev/null; then
		log "stopping make demo"
		# make and demo.sh share a process group (setsid below); demo.sh's trap stops the proxy
		# and Phoenix it started.
		kill -TERM -- "-$demo_pid" 2>/dev/null || true
		wait "$demo_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "running DEMO_HOLD=1 make demo in the background (output: $demo_out)"
: >"$demo_out"
setsid env DEMO_HOLD=1 make --no-print-directory demo </dev/null >"$demo_out" 2>&1 &
demo_pid=$!

deadline=$((SECONDS + timeout))
until grep -q 'press Ctrl-C to stop' "$demo_out"; do
	if ! kill -0 "$demo_pid" 2>/dev/null; then
		tail -n 30 "$demo_out" >&2
		die "make demo ended before it was ready"
	fi
	((SECONDS < deadline)) || die "make demo not ready after ${timeout}s (see $demo_out)"
	sleep 1
done
span_url="$(sed -n 's/^Phoenix: *//p' "$demo_out" | head -n1)"
[[ $span_url == http* ]] || die "no Phoenix URL in the demo's output ($demo_out)"
# The printed link is for a browser on this machine; Chromium reaches the same Phoenix.
log "span: $span_url"

chrome_flags=(
	--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
	--disable-background-networking --disable-component-update --disable-sync
	--hide-scrollbars --window-size="$size"
)

shot_cdp() {
	"$chromium" "${chrome_flags[@]}" --user-data-dir="$tmp/profile-cdp" \
		--remote-debugging-address=127.0.0.1 --remote-debugging-port=0 about:blank \
		>"$tmp/chromium.log" 2>&1 &
	chrome_pid=$!
	"$root/.venv/bin/python" - "$tmp/profile-cdp/DevToolsActivePort" "$span_url" "$out" "$size" <<'EOF'
"""Open a Phoenix span page, open its Annotations section, save a PNG (Chrome DevTools Protocol)."""
import base64, itertools, json, sys, time, urllib.request
from websockets.sync.client import connect

port_file, url, out, size = sys.argv[1:5]
width, height = (int(v) for v in size.split(","))
deadline = time.time() + 30
while True:
    try:
        port = open(port_file).read().split()[0]
        break
    except (OSError, IndexError):
        if time.time() > deadline:
            sys.exit("no DevTools port from Chromium")
        time.sleep(0.2)
targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
page = next(t for t in targets if t["type"] == "page")
ids = itertools.count(1)

with connect(page["webSocketDebuggerUrl"], max_size=64 << 20) as ws:
    def call(method, **params):
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv(timeout=30))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(expr):
        return call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def wait_for(expr, seconds):
        end = time.time() + seconds
        while time.time() < end:
            if js(expr):
                return True
            time.sleep(0.25)
        return False

    # The viewport itself, not the window (whose height includes what headless reserves).
    call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    call("Page.navigate", url=url)
    # The redirect resolves the span, then the trace page renders the span with its annotation.
    if not wait_for("document.body && document.body.innerText.includes('user feedback') && location.href.includes('selectedSpanNodeId')", 60):
        sys.exit("the page never showed the 'user feedback' annotation: " + str(js("location.href")))
    # Open the span's Annotations card: Phoenix 20 renders it collapsed, its button labelled
    # "Annotations".
    wait_for("!!document.querySelector('button[aria-label=Annotations][aria-expanded]')", 20)
    js("""(() => {
        const b = document.querySelector('button[aria-label=Annotations][aria-expanded=false]');
        if (b) b.click();
    })()""")
    # Click its "user feedback" pill: the popover shows the label, the score and the annotator kind.
    wait_for("!!document.querySelector('button[aria-label=Annotations][aria-expanded=true]')", 10)
    pill = js("""(() => {
        const card = document.querySelector('button[aria-label=Annotations]').closest('section');
        const e = [...card.querySelectorAll('[title="user feedback"]')][0];
        if (!e) return null;
        const r = e.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2];
    })()""")
    if pill:
        x, y = pill
        call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)
        wait_for("document.body.innerText.includes('thumbs-up') || document.body.innerText.includes('thumbs-down')", 10)
    time.sleep(1)  # let transitions settle
    png = call("Page.captureScreenshot", format="png")["data"]
    with open(out, "wb") as f:
        f.write(base64.b64decode(png))
    print(js("location.href"))
EOF
}

shot_cli() {
	"$chromium" "${chrome_flags[@]}" --user-data-dir="$tmp/profile-cli" \
		--virtual-time-budget=20000 --screenshot="$out" "$span_url" >"$tmp/chromium-cli.log" 2>&1
}

log "taking the screenshot with headless Chromium"
# Not in $(...): chrome_pid must be set in this shell for cleanup.
if shot_cdp >"$tmp/page-url"; then
	log "page: $(cat "$tmp/page-url")"
	kill -TERM "$chrome_pid" 2>/dev/null || true
	wait "$chrome_pid" 2>/dev/null || true
	chrome_pid=""
else
	log "DevTools capture failed (Chromium log: $(tail -n 3 "$tmp/chromium.log" | tr '\n' ' ')); plain --screenshot instead"
	kill -TERM "$chrome_pid" 2>/dev/null || true
	wait "$chrome_pid" 2>/dev/null || true
	chrome_pid=""
	shot_cli
fi
[[ -s $out ]] || die "no screenshot written"
bytes="$(wc -c <"$out")"
log "saved $out ($((bytes / 1024)) KB)"
((bytes < 500 * 1024)) || log "warning: $out is over 500 KB; try SCREENSHOT_SIZE=1280,800"
