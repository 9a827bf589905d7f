# Feather. `make help` lists the targets; `make test` is what CI runs (.ci/run).

GO ?= go
# One build configuration for everything — Feather's binaries, vet, tests and the pinned tools that make deps
# builds: no cgo, trimmed paths. So each package is compiled once and shared through the Go build cache.
export CGO_ENABLED = 0
export GOFLAGS = -trimpath -buildvcs=false
# Feather's binaries: static (no libc pages in every shim), no symbol tables.
BINFLAGS = -ldflags='-s -w'

.DEFAULT_GOAL := help
.PHONY: help deps deps-up deps-conformance guest build lint test bench conformance up down clean

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-7s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

deps: ## Install Debian packages and build pinned tools into _output/bin (cached; a second run takes seconds)
	test/tools/deps.sh

# What make up's cluster runs, without what only tests need (the upstream kubelet, crictl).
deps-up:
	test/tools/deps.sh up

# The upstream e2e suite, _output/bin/e2e.test, with the ginkgo CLI and agnhost (big; for make conformance).
deps-conformance:
	test/tools/deps.sh conformance

guest: ## Build the OSv-protocol test guest images into _output/guest (cached; a second run takes seconds)
	shim-osv/testguest/build.sh

build: ## Build all packages, and Feather's binaries into bin/
	$(GO) build ./...
	$(GO) build $(BINFLAGS) -o bin/ ./shim-osv/cmd/containerd-shim-osv-v1
	$(GO) build $(BINFLAGS) -o bin/ ./flint/cmd/flint
	$(GO) build $(BINFLAGS) -o bin/ ./kubelet/cmd/feather
	$(GO) build $(BINFLAGS) -o bin/ ./kubelet/cmd/feather-cri-log
	$(GO) build $(BINFLAGS) -o bin/ ./snapshotter/cmd/feather-snapshotter

lint: ## Check formatting of tracked .go files (gofmt) and run go vet
	@files=$$(git ls-files '*.go'); \
	if [ -n "$$files" ]; then \
		bad=$$(gofmt -l $$files); \
		if [ -n "$$bad" ]; then echo "gofmt: these files need gofmt -w:"; echo "$$bad"; exit 1; fi; \
	fi
	$(GO) vet ./...

# -p 1: tests of several packages make host-wide things (bridges, veths, iptables chains, cgroups) and check that
# none is left; run side by side, one would count the other's as leaks.
test: deps guest build lint ## Everything CI runs: deps, guest images, lint, all tests (end-to-end tests fail, not skip, on a missing prerequisite)
	FEATHER_E2E=required $(GO) test -p 1 -count=1 -timeout 60m ./...

bench: ## Run the benchmarks once each; they print tables of measured figures
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x ./...

# Not part of make test: it runs for tens of minutes. PROCS=N sets the ginkgo processes; it holds no lock itself:
# run it alone on the host (its cluster makes bridges, iptables chains and pods that host-wide leak checks see).
PROCS ?= 6
conformance: deps deps-conformance guest build ## Run the upstream [Conformance] specs of [sig-node] and the [sig-storage] volume specs against a Feather node; writes the table in kubelet/README.md
	$(GO) build -o _output/bin/feather-conformance ./test/cmd/feather-conformance
	_output/bin/feather-conformance --procs $(PROCS)

up: deps-up guest build ## Start a local cluster (control plane, containerd, agent) running a container and a unikernel Deployment; it runs until make down
	$(GO) build -o _output/bin/feather-up ./test/cmd/feather-up
	_output/bin/feather-up up

down: ## Stop the make up cluster and remove everything it made (no-op when none is up)
	$(GO) build -o _output/bin/feather-up ./test/cmd/feather-up
	_output/bin/feather-up down

clean: ## Remove bin/ and _output/ (the next make deps rebuilds the tools)
	rm -rf bin/ _output/
