# Gatehouse — developer entry points. `make run` and `make test` are the two
# set-up commands of the quick start.
GO        ?= go
BIN       ?= bin/gatehouse
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: build run test bench bench-authz bench-decision-logs bench-activation bench-oauth console-assets lint fmt clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gatehouse

## run: start `gatehouse serve` on the embedded store (./gatehouse-data).
run: build
	./$(BIN) serve

## test: the full suite (unit, store conformance on both backends, end-to-end).
test:
	$(GO) test $(TESTFLAGS) ./...

## bench: every benchmark, with allocations.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

## bench-authz: ext_authz over gRPC, one table: an empty Check handler, the
## real authorizer (following a real control plane) with decision logs off
## and on, and the opa-envoy-plugin-style baseline, each a process on CPU 0
## (GOMAXPROCS=1) loaded from CPU 1: 16 and 64 in flight, 1,000/s and 5,000/s
## (BENCH_AUTHZ_FLAGS=-duration 2s for a smoke run). Then the in-process
## per-Check time, bytes and allocations of Gatehouse and the baseline.
BENCH_AUTHZ_FLAGS ?= -duration 10s -warmup 2s
bench-authz:
	$(GO) run ./internal/authzbench/run $(BENCH_AUTHZ_FLAGS)
	$(GO) test -run '^$$' -bench BenchmarkCheck -benchmem -count=1 ./internal/authzbench

## bench-decision-logs: a real control plane and authorizer (authorizer on
## CPU 0, control plane and load on CPU 1, 64 in flight): checks/s with
## decision logs on vs off, then 5 minutes at 80% of the peak with the control
## plane stopped for 30 s (events made vs stored). BENCH_DATABASE_URL=postgres://…
## puts the control plane on PostgreSQL (a fresh database next to that one).
bench-decision-logs:
	$(GO) run ./internal/authzbench/run -mode decision-logs -concurrency 64 -duration 20s -rounds 3 -database-url "$(BENCH_DATABASE_URL)"
	$(GO) run ./internal/authzbench/run -mode outage -concurrency 64 -duration 5m -outage 30s -database-url "$(BENCH_DATABASE_URL)"

## bench-activation: the authorizer's start from its disk cache with a
## signed bundle of 10,000 APIs, in 5 fresh processes (time to the active
## engine, heap after GC, RSS), then the in-process benchmark (time and
## allocations per activation).
bench-activation:
	$(GO) run ./internal/activationbench/run -apis 10000 -runs 5
	$(GO) test -run '^$$' -bench BenchmarkActivate10kAPIs -benchmem -count=1 ./gateway

## bench-oauth: the OAuth provider in process behind httptest, on the
## embedded store (and on PostgreSQL with GATEHOUSE_TEST_DATABASE_URL=…):
## client_credentials tokens/s with RS256 and ES256, the code flow with a
## login session (authorize → callback → token exchange) p50/p99,
## discovery and JWKS req/s beside an empty handler's; then revoke →
## denied at serve's in-process authorizer and at a separate authorizer,
## real binaries over gRPC, p50/p99/max of 100 revocations.
BENCH_OAUTH_FLAGS ?= -benchtime 3s -count 1
bench-oauth:
	$(GO) test -run '^$$' -bench . $(BENCH_OAUTH_FLAGS) ./oauth
	$(GO) test -run '^$$' -bench BenchmarkRevokeToDenied -benchtime 100x -count 1 ./tests

## console-assets: rebuild the web console's vendored editor bundle
## (console/assets/vendor/codemirror.min.js and its licence notice) from npm,
## at the versions console/build/package-lock.json pins. Only this target
## needs Node.js (20+) and npm; the output is committed.
console-assets:
	cd console/build && npm ci --no-audit --no-fund && node build.mjs

## lint: gofmt check and go vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
