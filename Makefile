# The two commands a newcomer needs: `make demo` and `make test`.
GO ?= go

.PHONY: all build test unit e2e faults-long lint venv phoenix-start phoenix-stop clean

all: build

build:
	$(GO) build -o bin/proxy ./cmd/proxy

## test: everything CI runs: formatting, vet, unit tests, the end-to-end suite against a real Phoenix.
test: lint unit e2e

lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.venv/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/... ./faults/...
	scripts/check-layout.sh

## unit: go test ./... (offline: no Phoenix, no network; the shared-index tests run Debian's redis-server, installed if missing)
unit:
	scripts/redis.sh install
	$(GO) test -count=1 -race ./...

## e2e: the end-to-end suite and the fault suite (short outages); start and stop their own Phoenix (scripts/e2e.sh)
e2e:
	scripts/e2e.sh ./e2e/... ./faults/...

## faults-long: the fault suite with a 60 s Phoenix outage and a 60 s overload
faults-long:
	FAULTS_LONG=1 scripts/e2e.sh -v ./faults/...

venv:
	scripts/venv.sh

phoenix-start:
	scripts/phoenix.sh start

phoenix-stop:
	scripts/phoenix.sh stop

clean:
	rm -rf bin

## bench: compare the proxy with the OpenTelemetry Collector and a counting sink on every load (~25 min; bench/compare.sh)
.PHONY: bench
bench:
	bench/compare.sh

## demo: Phoenix, the proxy and the demo app on loopback, then where to look (scripts/demo.sh)
## screenshot: retake docs/images/phoenix-annotated-span.png from a real demo in headless Chromium
.PHONY: demo screenshot
demo:
	scripts/demo.sh

screenshot:
	scripts/screenshot.sh

## demo-web: make demo plus the chat page with the feedback widget on http://127.0.0.1:8090 (scripts/demo-web.sh)
.PHONY: demo-web
demo-web:
	scripts/demo-web.sh
