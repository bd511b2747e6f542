# Switchboard: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help run build install test test-deploy chart-sync lint fmt deps cluster autobahn fuzz soak faults faults-long

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

run: ## Build and run `switchboard dev` (gateway + gRPC API + in-process bus, no NATS) with the chat example at /chat/
	$(CARGO) run --release -p switchboard -- dev --config examples/chat/switchboard.toml --demo-tokens

build: ## Build every crate and the switchboard binary (release)
	$(CARGO) build --release --workspace

install: ## Install the switchboard binary into ~/.cargo/bin (cargo install --path crates/switchboard --locked)
	$(CARGO) install --path crates/switchboard --locked

cluster: deps ## Run a local cluster: 3 NATS nodes, 2 control replicas, 3 gateways (Ctrl-C stops it)
	$(CARGO) build --release -p switchboard
	SWITCHBOARD_BIN=target/release/switchboard deploy/cluster.sh

deps: ## Install what the tests need, when missing (nats-server, promtool, the chart test tools, the Autobahn TestSuite)
	@tests/tools/install-deps.sh

test: deps ## Install what the tests need, then run every test (cargo test, the alert rules and the Helm chart, the Autobahn TestSuite, the JS SDK and browser tests)
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace -- --skip soak:: --skip faults::
	@# The whole-cluster runs (the 2-minute soak, the fault suite, NATS faults) one at a time, after
	@# the rest, so their load does not starve the timing-sensitive tests running beside them.
	$(CARGO) test -p switchboard-tests --test e2e -- soak:: faults:: --test-threads 1
	tests/tools/chart-test.sh target/debug/switchboard
	tests/tools/autobahn.sh target/debug/switchboard
	$(MAKE) --no-print-directory test-js-only

.PHONY: test-js test-js-only
test-js: ## The JS SDK's tests against `switchboard dev` and the chat example in Chromium on a local cluster, ~40 s
	@tests/tools/install-deps.sh --js-only
	$(CARGO) build -p switchboard
	$(MAKE) --no-print-directory test-js-only

test-js-only:
	cd clients/js && SWITCHBOARD_BIN=$(CURDIR)/target/debug/switchboard timeout 300 node --test test/sdk.test.mjs test/bundle.test.mjs test/chat.browser.test.mjs

SOAK ?= 1h
soak: deps ## Soak, default 1 hour (SOAK=10m for a short one): mixed load on a local cluster (3 NATS, 2 control, 3 gateways), RSS and open files of every process every 10 s, zero loss; prints growth per hour (make test runs a 2-minute variant)
	$(CARGO) build -p switchboard
	set -o pipefail; SOAK=$(SOAK) $(CARGO) test -p switchboard-tests --test e2e soak:: -- --nocapture 2>&1 | tee target/soak.log

test-deploy: ## The alert rules (promtool test rules) and the Helm chart (lint, render, Kubernetes schemas, contract with the binary), ~10 s
	@tests/tools/chart-test.sh --install-only
	$(CARGO) build -p switchboard
	tests/tools/chart-test.sh target/debug/switchboard

chart-sync: ## Rewrite the chart's generated parts: the schema's config part, the rules and dashboard copies, the README's values table
	$(CARGO) build -p switchboard
	tests/tools/chart-test.sh --python tests/chart/sync.py target/debug/switchboard

fuzz: ## Fuzz each cargo-fuzz target in fuzz/ for 60 s (FUZZ_SECONDS), one by one; nightly; not part of make test
	fuzz/run.sh

autobahn: ## Autobahn TestSuite (RFC 6455, ~30 s) against `switchboard dev --test-echo-endpoint`; counts into docs/conformance.md
	$(CARGO) build -p switchboard
	tests/tools/autobahn.sh target/debug/switchboard

faults: ## The fault suite alone (~3 min): 200 clients through gateway, control and NATS faults, churn and jitter; zero loss (docs/reliability.md)
	$(CARGO) build -p switchboard
	$(CARGO) test -p switchboard-tests --test e2e faults:: -- --skip nats_faults:: --nocapture --test-threads 1

faults-long: ## The fault suite's long variant (~15 min): 600 clients, 20 s either side of each fault, 3 min of jitter (SWITCHBOARD_FAULTS=long)
	$(CARGO) build -p switchboard
	SWITCHBOARD_FAULTS=long $(CARGO) test -p switchboard-tests --test e2e faults:: -- --skip nats_faults:: --nocapture --test-threads 1

lint: ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench bench-quick bench-scale bench-jitter

bench-quick: ## Benchmark sanity run, ~1 min: switchboard dev, broadcast to 1,000 and 2,000 idle, pinned, release build
	$(CARGO) build --release -p switchboard
	python3 bench/suite.py --quick

bench: ## Benchmark suite, ~17 min: switchboard (dev, 2-gateway cluster), the floor and peers, then jitter; writes docs/performance.md
	bench/install-peers.sh
	$(CARGO) build --release -p switchboard -p switchboard-bench
	python3 bench/suite.py

bench-jitter: ## Jitter runs alone, ~2 min: switchboard-cluster-history, Socket.IO with recovery, nats-ws; rewrites the Jitter section of docs/performance.md
	bench/install-peers.sh
	$(CARGO) build --release -p switchboard
	python3 bench/suite.py --only jitter

bench-scale: ## Scale run, ~5 min: nats-server, control, 6 gateways and 6 idle generators towards 102k connections
	bench/install-peers.sh
	$(CARGO) build --release -p switchboard
	bench/scale.sh

.PHONY: deny

# cargo-deny checks Cargo.lock against deny.toml. Advisories are not part of `make deny`:
# they need RustSec's advisory database, which cargo-deny clones from GitHub, and this
# target must work offline. Where GitHub is reachable, run `cargo deny check advisories`.
deny: ## Check dependency licenses, duplicate versions (warnings) and sources with cargo-deny (deny.toml)
	@command -v cargo-deny >/dev/null || { echo "cargo-deny is missing: cargo install cargo-deny --locked" >&2; exit 1; }
	$(CARGO) deny check licenses bans sources
