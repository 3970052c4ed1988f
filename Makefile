# Strata build, run and test entry points. Everything needs only Go and the
# module proxy: generators and linters are pinned as `tool` lines in go.mod
# (buf in buildtools/go.mod, to keep its dependencies out of the main module).

GO        ?= go
BUF       := $(GO) tool -modfile=buildtools/go.mod buf
BIN       := bin
DATA_DIR  ?= data
CONFIG    ?= strata.example.toml
FUZZTIME  ?= 30s
# The commit and work-tree state for --version: the go command records no VCS
# information in a Git worktree, so `make build` passes them (internal/buildinfo).
BUILDINFO  = github.com/stratamq/strata/internal/buildinfo
BUILD_LDFLAGS = -X $(BUILDINFO).commit=$(shell git rev-parse HEAD 2>/dev/null) -X $(BUILDINFO).modified=$(if $(shell git status --porcelain 2>/dev/null | head -1),true,false)
# Protobuf compatibility: the newest release tag, else the first commit with
# proto/ (until the first release). `make proto-check` fails on a change that
# breaks wire or generated-code compatibility with it (buf breaking, FILE).
BUF_AGAINST_REF = $(or $(shell git describe --tags --match 'v[0-9]*' --abbrev=0 2>/dev/null),$(shell git rev-list --reverse HEAD -- proto | head -1))
# Packages whose tests run under the race detector in `make test`.
RACE_PKGS := ./lts/... ./gateway/... ./dsd/... ./tools/... ./internal/...

.PHONY: all build run clients test test-unit test-race proto proto-check proto-breaking lint bench bench-go fuzz torture release image clean

all: build

build: ## compile every program into bin/
	$(GO) build -ldflags '$(BUILD_LDFLAGS)' -o $(BIN)/ ./dsd/cmd/dsd ./tools/dstool ./tools/dsbench ./tools/mqttload ./tools/fleetbench ./tools/mqttpasswd ./gateway/cmd/gateway

run: build ## start dsd and a gateway with a local data directory
	./scripts/run.sh "$(BIN)" "$(CONFIG)" "$(DATA_DIR)"

test: proto-check lint test-unit test-race ## everything CI runs

# The real clients' npm packages (MQTT.js, playwright-core), pinned by
# package-lock.json, into integration/realclients/testdata/node/node_modules
# (not committed). Their tests skip, saying what is missing, without them;
# .ci/run installs them and the Debian packages (docs/interop.md).
CLIENTS_NODE := integration/realclients/testdata/node

clients: ## npm packages of the real-client tests (MQTT.js, playwright-core; needs Node.js and npm)
	cd $(CLIENTS_NODE) && npm ci --no-audit --no-fund

test-unit:
	$(GO) test -count=1 -timeout 12m ./...

test-race:
	$(GO) test -count=1 -race -timeout 12m $(RACE_PKGS)

lint: ## gofmt, go vet, staticcheck, import rules, file sizes (a Go test)
	$(GO) test -count=1 ./tools/lint

proto: ## regenerate gen/ from proto/
	$(BUF) lint
	$(BUF) generate

proto-check: proto-breaking ## generated code must match proto/, and proto/ must stay compatible
	$(BUF) lint
	./scripts/proto-check.sh "$(BUF)"

proto-breaking: ## proto/ against the last release tag (else the first proto commit): no field renumbered, removed or retyped
	@test -n "$(BUF_AGAINST_REF)" || { echo "proto-breaking: no commit with proto/ in this history (a shallow clone?)" >&2; exit 1; }
	$(BUF) breaking --against '.git#ref=$(BUF_AGAINST_REF),subdir=proto'

bench: ## Strata vs mosquitto side by side (tools/benchcmp; docs/benchmarks.md); BENCHFLAGS="--runs 3" etc.
	$(GO) build -o $(BIN)/ ./dsd/cmd/dsd ./gateway/cmd/gateway ./tools/mqttload ./tools/benchcmp
	$(BIN)/benchcmp --bin $(BIN) --out $(BIN)/bench-side-by-side.md $(BENCHFLAGS)

bench-go: ## go test benchmarks of every package
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz: ## run every fuzz target for FUZZTIME each
	./scripts/fuzz.sh "$(FUZZTIME)"

torture: ## long crash and durability runs
	STRATA_TORTURE=1 $(GO) test -count=1 -timeout 90m ./dsd/... ./integration/...

release: ## static binaries for linux/amd64 and linux/arm64, tar.gz archives and SHA256SUMS in dist/ (docs/install.md)
	./scripts/release.sh

image: release ## the container image (podman or docker) from dist/; IMAGE_ARCHS="amd64 arm64" builds both
	./scripts/image.sh

clean:
	rm -rf $(BIN) $(DATA_DIR) dist
