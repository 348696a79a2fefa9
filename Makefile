# The agent's build. `make test` is what CI runs (see .ci/run).
GO        ?= go
BIN       ?= bin/agent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
NPM_DIR   := test/npm

.PHONY: all build test test-short npm-deps fuzz-short bench bench-e2e vet fmt clean demo tidy-check

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/agent

# Test-only npm peers (KPL cross-check, Kinesis emulator). Never shipped.
npm-deps: $(NPM_DIR)/node_modules/.installed
$(NPM_DIR)/node_modules/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	npm ci --prefix $(NPM_DIR) --no-audit --no-fund --loglevel=error
	touch $@

test: npm-deps tidy-check
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...
	# Allocation tests again without the race detector, which disables them
	# (sync.Pool drops items on purpose under -race).
	$(GO) test -count=1 -run 'Alloc' ./agent/ ./aggregate/ ./spool/ ./agent/source/file/
	$(MAKE) fuzz-short

# go.mod must be tidy: direct dependencies listed as such, nothing unused.
tidy-check:
	@$(GO) mod tidy -diff || { echo 'go.mod/go.sum are not tidy: run go mod tidy'; exit 1; }

test-short:
	$(GO) test -short ./...

# A few seconds of each fuzz target, on top of the seed corpora run by `go test`.
FUZZTIME ?= 5s
fuzz-short:
	@set -e; for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  dir=$$(dirname $$spec); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$spec | sed 's/func //'); do \
	    echo "fuzz $$dir $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$dir; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./aggregate/ ./spool/ ./agent/source/file/ ./agent/process/ ./internal/jsontext/

bench-e2e: build
	$(GO) run ./internal/benche2e -agent $(BIN)

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

demo: build
	$(BIN) tail --once --from-beginning testdata/sample.log

clean:
	rm -rf bin dist
