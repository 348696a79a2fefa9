# The agent's build. `make test` is what CI runs (see .ci/run).
GO        ?= go
BIN       ?= bin/agent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
NPM_DIR   := test/npm

.PHONY: all build test cross-check test-short test-powercut npm-deps fuzz-short bench bench-e2e bench-kinesis bench-kafka bench-socket bench-spool-floor vet fmt clean demo tidy-check package test-package docker

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/agent

# Test-only npm peers (KPL cross-check, Kinesis emulator). Never shipped.
npm-deps: $(NPM_DIR)/node_modules/.installed
$(NPM_DIR)/node_modules/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	npm ci --prefix $(NPM_DIR) --no-audit --no-fund --loglevel=error
	touch $@

test: npm-deps tidy-check cross-check
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...
	# Allocation tests again without the race detector, which disables them
	# (sync.Pool drops items on purpose under -race).
	$(GO) test -count=1 -run 'Alloc' ./agent/ ./aggregate/ ./spool/ ./agent/source/file/
	$(MAKE) fuzz-short

# The packages ship for Linux, but developers `go install` the agent on macOS
# (agent tail) and FreeBSD: it must keep building there. Vet only (the
# standard library's cross-compiled packages are cached after the first run).
# Windows is left out: the file source identifies files by inode.
cross-check:
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=freebsd GOARCH=amd64 $(GO) vet ./...

# go.mod must be tidy: direct dependencies listed as such, nothing unused.
tidy-check:
	@$(GO) mod tidy -diff || { echo 'go.mod/go.sum are not tidy: run go mod tidy'; exit 1; }

test-short:
	$(GO) test -short ./...

# Many more simulated power cuts than `make test` runs (spool and checkpoint
# store, internal/crashfs). AGENT_POWERCUT_SEED replays a failure's seed.
AGENT_POWERCUT_ITER ?= 100000
test-powercut:
	AGENT_POWERCUT_ITER=$(AGENT_POWERCUT_ITER) $(GO) test -count=1 -timeout 0 -run 'PowerCut' ./spool/ ./agent/checkpoint/

# A few seconds of each fuzz target, on top of the seed corpora run by `go test`.
FUZZTIME ?= 3s
fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz-short.sh

# deb and rpm packages (packaging/nfpm.yaml, built by nfpm: `go tool nfpm`)
# for each of PKG_ARCHES, into DIST: make package VERSION=1.2.3 (a tag
# v1.2.3 checked out works without VERSION; the v is dropped).
DIST        ?= dist
PKG_ARCHES  ?= amd64 arm64
PKG_VERSION  = $(patsubst v%,%,$(VERSION))
package:
	@echo '$(PKG_VERSION)' | grep -Eq '^[0-9]+\.[0-9]+(\.[0-9]+)*([~+][0-9A-Za-z.~+]*)?$$' || { \
	  echo 'make package: VERSION must be a release version such as 1.2.3 or 1.2.3~rc1 (got "$(VERSION)")'; exit 2; }
	@mkdir -p $(DIST)
	@printf 'agent (%s-1) unstable; urgency=medium\n\n  * Release %s, built from commit %s.\n\n -- agent maintainers <agent@kplagent.invalid>  %s\n' \
	  '$(PKG_VERSION)' '$(PKG_VERSION)' '$(COMMIT)' "$$(date -u -R)" | gzip -9n > $(DIST)/changelog.Debian.gz
	@set -e; for arch in $(PKG_ARCHES); do \
	  echo "package: build linux/$$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/agent-linux-$$arch ./cmd/agent; \
	  for fmt in deb rpm; do \
	    VERSION='$(PKG_VERSION)' PKG_ARCH=$$arch BIN=$(DIST)/agent-linux-$$arch CHANGELOG=$(DIST)/changelog.Debian.gz \
	      $(GO) tool nfpm package --config packaging/nfpm.yaml --packager $$fmt --target $(DIST)/; \
	  done; \
	done

# Builds, inspects, lints and (with CI=true or AGENT_PACKAGE_TEST_INSTALL=1,
# as root) installs, upgrades and purges the deb on this machine.
test-package:
	packaging/test.sh

# The container image (Dockerfile), where a container builder exists.
IMAGE ?= agent:$(VERSION)
docker:
	docker build --build-arg VERSION='$(VERSION)' --build-arg COMMIT='$(COMMIT)' --build-arg DATE='$(DATE)' -t '$(IMAGE)' .

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./aggregate/ ./spool/ ./agent/source/file/ ./agent/source/socket/ ./agent/process/ ./internal/jsontext/

bench-e2e: build
	$(GO) run ./internal/benche2e -agent $(BIN)

# The same log to an in-process fake Kinesis and to the HTTP sink, compared.
bench-kinesis: build
	$(GO) run ./internal/benche2e -agent $(BIN) -kinesis

# agent tail --to kafka:// against an in-process kfake broker, next to a bare
# franz-go producer (the ceiling). Not part of `make test`.
bench-kafka: build
	$(GO) run ./internal/benche2e -agent $(BIN) -kafka

# One client writing ~160-byte lines to agent tail unix://… --to blackhole:
# (socket -> aggregate -> spool -> sender -> discard). Not part of `make test`.
# BENCH_ARGS='-size 134217728 -runs 1' for a short run.
bench-socket: build
	$(GO) run ./internal/benche2e -agent $(BIN) -socket $(BENCH_ARGS)

# What writing and reading every byte through the page cache costs this
# machine (the spool path's floor), next to the spool package alone, in CPU-s
# per GB (internal/benche2e/iofloor.go). Not part of `make test`.
bench-spool-floor:
	$(GO) run ./internal/benche2e -io-floor $(BENCH_ARGS)

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

demo: build
	$(BIN) tail --once --from-beginning testdata/sample.log

clean:
	rm -rf bin dist
