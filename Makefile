# Gatehouse — developer entry points. `make run` and `make test` are the two
# set-up commands of the quick start.
GO        ?= go
BIN       ?= bin/gatehouse
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: build run test bench bench-authz lint fmt clean

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

## bench-authz: gRPC load against the authorizer and an opa-envoy-plugin-style
## evaluation of the same policy, then per-Check time and allocations.
bench-authz:
	$(GO) run ./internal/authzbench/run -duration 20s -concurrency 16
	$(GO) test -run '^$$' -bench BenchmarkCheck -benchmem -count=1 ./gateway

## lint: gofmt check and go vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
