# The two commands a newcomer needs: `make demo` and `make test`.
GO ?= go

.PHONY: all build test unit e2e lint venv phoenix-start phoenix-stop clean

all: build

build:
	$(GO) build -o bin/proxy ./cmd/proxy

## test: everything CI runs: formatting, vet, unit tests, the end-to-end suite against a real Phoenix.
test: lint unit e2e

lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.venv/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...

## unit: go test ./... (offline: no Phoenix, no network)
unit:
	$(GO) test -count=1 -race ./...

## e2e: the end-to-end suite; starts and stops its own Phoenix (scripts/e2e.sh)
e2e:
	scripts/e2e.sh

venv:
	scripts/venv.sh

phoenix-start:
	scripts/phoenix.sh start

phoenix-stop:
	scripts/phoenix.sh stop

clean:
	rm -rf bin
