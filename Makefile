# longshore — one entry point for setup, the demo, tests, lint, builds and benchmarks.
# A fresh clone needs only `make demo` and `make test`; both run `setup` themselves.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
VENV_BIN    := $(CURDIR)/$(VENV)/bin
STAMP       := $(VENV)/.installed
PYTHON      ?= python3
FUNCTIONS   := config-resolver queue-scaler recovery
# Build the workspace as a whole, all targets, and run binaries from the target dir: a `-p`
# selection, or a build without the test targets (whose dev-dependencies turn on more features
# of serde & co.), unifies features differently and recompiles every AWS SDK crate
# (../shared/TOOLCHAIN.md). One feature set means one build.
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
export PATH := $(VENV_BIN):$(PATH)
# The farm finds moto_server here; tests never touch a real AWS account or the metadata service.
export LONGSHORE_VENV := $(CURDIR)/$(VENV)
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help setup demo test lint build bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## local .venv with the pinned Python tools (moto, cargo-lambda, cfn-lint, awscli)

# Idempotent: reinstalls only when requirements.txt changes; later runs need no network.
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV_BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: setup ## the whole farm locally: moto, two simulated masters, booting agents, a job trace
	cargo build --workspace --all-targets
	RUST_LOG=$${RUST_LOG:-warn} $(TARGET_DIR)/debug/longshore-farm demo

test: setup lint ## lint, then every test: unit, property, integration, end-to-end (moto, simulator)
	cargo build --workspace --all-targets
	cargo test --workspace --all-targets --no-fail-fast

lint: setup ## fmt, clippy (warnings are errors) and cfn-lint
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@if [ -f infra/template.yaml ]; then cfn-lint infra/template.yaml; else echo "cfn-lint: no infra/template.yaml yet"; fi

build: setup ## release builds of the three Lambdas with cargo-lambda
	cargo lambda build --release $(addprefix -p ,$(FUNCTIONS))

# criterion, then the policy simulator on every standard trace (simulated time, about a minute
# in a debug build; the same build command as demo and test, so nothing extra is compiled).
bench: setup ## criterion benchmarks, then the policy simulator (out/bench/policy.json, policy.png)
	cargo bench --workspace
	cargo build --workspace --all-targets
	$(TARGET_DIR)/debug/longshore-farm simulate --out out/bench

clean: ## remove build output, the venv and demo/bench output
	cargo clean
	rm -rf $(VENV) out
