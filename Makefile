# longshore — one entry point for setup, the demo, tests, lint, builds and benchmarks.
# A fresh clone needs only `make demo` and `make test`; both run `setup` themselves.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
VENV_BIN    := $(CURDIR)/$(VENV)/bin
STAMP       := $(VENV)/.installed
# checkov 3.3.30 pins boto3==1.35.49 and networkx<2.7, older than the moto/awscli pins of
# requirements.txt (boto3 1.44.8, networkx 3.6.1), so it has a venv of its own.
SCAN_VENV   := .venv-scan
SCAN_STAMP  := $(SCAN_VENV)/.installed
# No network at run time: --skip-download keeps checkov off the Prisma Cloud API (guidelines,
# custom policies) and CKV_SKIP_PACKAGE_UPDATE_CHECK off PyPI's "new version?" check. --quiet
# --compact print only failed checks, without code; any unsuppressed failed check exits 1.
CHECKOV     := CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE $(CURDIR)/$(SCAN_VENV)/bin/checkov \
	--framework cloudformation --quiet --compact --skip-download
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

.PHONY: help setup demo test lint build bench clean deploy deploy-local chaos fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## local .venv with the pinned Python tools (moto, cargo-lambda, cfn-lint, awscli)

# Idempotent: reinstalls only when requirements.txt changes; later runs need no network.
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV_BIN)/pip install --quiet -r requirements.txt
	touch $@

# The same for the scanner: reinstalls only when requirements-scan.txt changes.
$(SCAN_STAMP): requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet -r requirements-scan.txt
	touch $@

demo: setup ## the whole farm locally: moto, two simulated masters, booting agents, a job trace
	cargo build --workspace --all-targets
	RUST_LOG=$${RUST_LOG:-warn} $(TARGET_DIR)/debug/longshore-farm demo

test: setup lint ## lint, then every test: unit, property, integration, end-to-end (moto, simulator)
	cargo build --workspace --all-targets
	cargo test --workspace --all-targets --no-fail-fast

lint: setup $(SCAN_STAMP) ## fmt, clippy (warnings are errors), cfn-lint and checkov on the template
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cfn-lint infra/template.yaml
	$(CHECKOV) -f infra/template.yaml

build: setup ## release builds of the three Lambdas with cargo-lambda
	cargo lambda build --release $(addprefix -p ,$(FUNCTIONS))

# ---- deploy ----------------------------------------------------------------------------------
# make deploy STACK=ci REGION=eu-west-1 PARAMS=my.params BUCKET=my-artifact-bucket
# Needs AWS credentials, Docker (the master image is built from the Jenkins base image) and an
# S3 bucket for the packaged code and template. Not runnable in this sandbox (no account, no
# network): README "Infrastructure / deploy" says what is and is not proven.
STACK            ?= longshore
REGION           ?= us-east-1
PARAMS           ?= infra/parameters.example
BUCKET           ?=
MASTER_IMAGE_TAG ?= 2.568.1-1
CFN_DEPLOY        = aws cloudformation deploy --region $(REGION) --stack-name $(STACK) \
	--template-file out/packaged.yaml --s3-bucket $(BUCKET) --s3-prefix $(STACK) \
	--capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset

deploy: setup ## deploy the stack into AWS (STACK=… REGION=… PARAMS=file BUCKET=…)
	@[[ "$(STACK)" =~ ^[a-z][a-z0-9-]{0,40}$$ ]] || { echo "STACK must be lowercase letters, digits and - (it names ECR repositories)"; exit 1; }
	@[[ -n "$(BUCKET)" ]] || { echo "BUCKET=<S3 bucket for the packaged code> is required"; exit 1; }
	@[[ -f "$(PARAMS)" ]] || { echo "PARAMS=$(PARAMS): no such file"; exit 1; }
	cargo lambda build --release $(addprefix -p ,$(FUNCTIONS))
	for f in $(FUNCTIONS); do mkdir -p out/lambda/$$f && cp $(TARGET_DIR)/lambda/$$f/bootstrap out/lambda/$$f/bootstrap; done
	aws cloudformation package --region $(REGION) --template-file infra/template.yaml \
		--s3-bucket $(BUCKET) --s3-prefix $(STACK) --output-template-file out/packaged.yaml
	@# The masters' image lives in the stack's own repository: a first deploy runs the
	@# services at 0 tasks, the image is pushed, then the services start.
	params="$$(grep -Ev '^[[:space:]]*(#|$$)' $(PARAMS) | tr '\n' ' ')"; \
	if ! aws cloudformation describe-stacks --region $(REGION) --stack-name $(STACK) >/dev/null 2>&1; then \
		$(CFN_DEPLOY) --parameter-overrides $$params MasterImageTag=$(MASTER_IMAGE_TAG) MasterDesiredCount=0; \
	fi; \
	repo="$$(aws cloudformation describe-stacks --region $(REGION) --stack-name $(STACK) \
		--query "Stacks[0].Outputs[?OutputKey=='MasterImageRepositoryUri'].OutputValue" --output text)"; \
	if ! aws ecr describe-images --region $(REGION) --repository-name "$${repo#*/}" \
		--image-ids imageTag=$(MASTER_IMAGE_TAG) >/dev/null 2>&1; then \
		docker build -t "$$repo:$(MASTER_IMAGE_TAG)" infra/jenkins-master && \
		aws ecr get-login-password --region $(REGION) | docker login --username AWS --password-stdin "$${repo%%/*}" && \
		docker push "$$repo:$(MASTER_IMAGE_TAG)"; \
	fi && \
	$(CFN_DEPLOY) --parameter-overrides $$params MasterImageTag=$(MASTER_IMAGE_TAG) MasterDesiredCount=1
	aws cloudformation describe-stacks --region $(REGION) --stack-name $(STACK) --query 'Stacks[0].Outputs' --output table

deploy-local: setup ## deploy infra/template.yaml into a local moto and answer its custom resource
	cargo build --workspace --all-targets
	RUST_LOG=$${RUST_LOG:-warn} $(TARGET_DIR)/debug/longshore-farm deploy-local --params $(PARAMS) $(if $(KEEP),--keep)

# One run, one table: the release build of every binary and benchmark (one feature set, so
# criterion reuses it), criterion, the policy simulator on every standard trace (simulated
# time, about a minute), the Lambdas' footprint from their release binaries, then the table
# of every figure against its goal or its peer (bench-report).
bench: setup ## release build, criterion, policy simulator, Lambda footprint, then one table (out/bench)
	cargo build --release --workspace --bins --benches
	cargo bench --workspace
	cargo build --workspace --all-targets
	$(TARGET_DIR)/debug/longshore-farm simulate --out out/bench
	$(TARGET_DIR)/debug/longshore-farm footprint --profile release --out out/bench
	$(TARGET_DIR)/debug/longshore-farm bench-report --out out/bench --target-dir $(TARGET_DIR)

# Seeded fault scenarios on the fast local farm (one moto for the batch); run i uses SEED+i, so
# a failing seed replays with `make chaos RUNS=1 SEED=<seed>`. Writes out/chaos/summary.json.
RUNS ?= 20
SEED ?= 1
JOBS ?= 2
chaos: setup ## the fault harness: RUNS seeded runs from SEED, invariants checked (out/chaos)
	cargo build --workspace --all-targets
	RUST_LOG=$${RUST_LOG:-off} $(TARGET_DIR)/debug/longshore-farm chaos --runs $(RUNS) --seed $(SEED) --jobs $(JOBS) --out out/chaos

# ---- fuzz ------------------------------------------------------------------------------------
# cargo-fuzz (libFuzzer) on the parsers and pure decisions that read outside input: fuzz/ is a
# crate and workspace of its own, excluded from the main one, so `cargo build --workspace` and
# `make test` never build it. cargo-fuzz 0.13.2 is installed into .tools when not on the PATH.
# Only stable Rust is here: `-s none` (no AddressSanitizer, which needs nightly's -Zsanitizer;
# safe Rust needs it little) builds on stable without RUSTC_BOOTSTRAP; coverage
# instrumentation, debug assertions and overflow checks (-a) stay on. The first build compiles
# the whole dependency tree instrumented, into FUZZ_TARGET_DIR (its own dir: other RUSTFLAGS).
# Targets run one after the other for FUZZ_SECONDS each; the grown corpus and any crashing
# input go to out/fuzz (not committed); fuzz/seeds holds the seeds. Smoke run:
# `make fuzz FUZZ_SECONDS=10`. One target: `make fuzz FUZZ_TARGETS=label_expr`.
FUZZ_SECONDS    ?= 600
FUZZ_TARGETS    ?=
FUZZ_TARGET_DIR ?= $(TARGET_DIR)/fuzz
fuzz: ## fuzz every target for FUZZ_SECONDS (default 600) each; fails on any crash (out/fuzz)
	@command -v cargo-fuzz >/dev/null || [ -x .tools/bin/cargo-fuzz ] || \
		cargo install cargo-fuzz --version 0.13.2 --locked --root $(CURDIR)/.tools
	PATH=$(CURDIR)/.tools/bin:$$PATH CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) \
		fuzz/run.sh $(FUZZ_SECONDS) $(CURDIR)/out/fuzz $(FUZZ_TARGETS)

clean: ## remove build output, the venvs and demo/bench output
	cargo clean
	rm -rf $(VENV) $(SCAN_VENV) out
