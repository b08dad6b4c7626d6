# Fetchreward developer commands. The local stack (PostgreSQL, SQS and KMS emulators) runs
# without Docker: see docs/local-stack.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Exports the local stack's endpoints (written by dev/up.sh) into a recipe line's commands.
STACK_ENV := set -a; . target/dev/env; set +a

# Prefixes every release build: the profile-guided flags of dev/release-rustflags.sh.
RELEASE := RUSTFLAGS="$$(bash dev/release-rustflags.sh)"

.PHONY: up down env check test doc demo bench bench-latency bench-instructions bench-compare fuzz certs chaos soak observe lint-observability lint-deploy image pgo-profile

## up: start the local stack (idempotent) and print its endpoints
up:
	@bash dev/up.sh

## down: stop the local stack and delete its throwaway data
down:
	@bash dev/down.sh

## env: print the export lines of the running stack (eval "$$(make -s env)")
env:
	@if [ -f target/dev/env ]; then cat target/dev/env; \
	else echo "the local stack is not up: run make up" >&2; exit 1; fi

## certs: a development CA and a certificate per identity under target/dev/certs
certs:
	cargo run --quiet -p fetchreward-cli -- dev-certs --out target/dev/certs

## check: formatting, lints and the unit and property tests, without the local stack (about a minute on a warm build)
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo nextest run --workspace -E 'kind(lib) | kind(bin) | package(fetchreward-model)'

## test: formatting, lints, the dependency policy, the deployment lints and every test, against the local stack
test: up
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo deny --log-level error check bans licenses sources
	$(MAKE) --no-print-directory lint-deploy
	$(MAKE) --no-print-directory lint-observability
	$(STACK_ENV); cargo nextest run --workspace

## lint-observability: the alert rules checked and unit-tested by promtool, the dashboard JSON what its generator writes
lint-observability:
	promtool check rules deploy/observability/prometheus/alerts.yml
	cd deploy/observability/prometheus && promtool test rules alerts_test.yml
	python3 deploy/observability/grafana/dashboard.py --check

## lint-deploy: the Terraform, the chart, the Dockerfile, the workflows and the scripts through checkov, helm, kubernetes-validate, hadolint, yamllint, shellcheck and zizmor
lint-deploy:
	@bash dev/lint-deploy.sh

## image: the OCI image built by buildah from the Dockerfile and checked without running it (IMAGE_BASE=local|official)
image:
	@bash dev/image.sh

## observe: the demo's services left running and a local Prometheus scraping them with the alert rules (STOP=1 stops them)
observe:
	@bash dev/observe.sh

## doc: the workspace's API documentation, warnings refused (target/doc)
doc:
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

## demo: the whole pipeline on the local stack with the project's sample
demo:
	@bash dev/demo.sh

## bench: micro-benchmarks of the vault and the writer, then the whole pipeline (BENCH_MESSAGES=100000)
bench: up
	$(RELEASE) cargo build --release --bins
	$(STACK_ENV); $(RELEASE) cargo bench -p fetchreward-writer -p fetchreward-vault
	$(STACK_ENV); $(RELEASE) cargo bench -p fetchreward-e2e --bench pipeline

## bench-latency: the pipeline with 20 ms added to every SQS request, by pollers and ingestor replicas (BENCH_LATENCY_MS, BENCH_LATENCY_MESSAGES); then the end-to-end latency at 1,000 msgs/s offered for 60 s (BENCH_RATE, BENCH_SECONDS)
bench-latency: up
	$(RELEASE) cargo build --release --bins
	$(STACK_ENV); $(RELEASE) cargo bench -p fetchreward-e2e --bench latency
	$(STACK_ENV); $(RELEASE) cargo bench -p fetchreward-e2e --bench end_to_end_latency

## bench-instructions: instructions per message of each service, counted by callgrind (INSTR_SMALL=2000, INSTR_LARGE=6000; BENCH_VECTOR=path counts Vector too)
bench-instructions: up
	$(RELEASE) cargo build --release --bins
	$(STACK_ENV); $(RELEASE) bash dev/bench-instructions.sh

## bench-compare: two pipeline benchmark runs side by side (A=old/pipeline.json B=new/pipeline.json)
bench-compare:
	@python3 dev/bench-compare.py "$(A)" "$(B)"

## pgo-profile: record pgo/fetchreward.profdata, the profile release builds are optimised with, from one benchmark round through instrumented services (PGO_MESSAGES=100000)
pgo-profile: up
	@bash dev/pgo-profile.sh

## fuzz: the parsing properties (message bodies, tokens) with many generated cases (FUZZ_CASES)
FUZZ_CASES ?= 1000000
fuzz:
	$(RELEASE) PROPTEST_CASES=$(FUZZ_CASES) cargo test --release -p fetchreward-model --test it

## chaos: faults under load on the durable stack: kill -9 of each service, a Postgres crash, an SQS outage, replicas, poison (CHAOS_MESSAGES=100000)
# The durable mode (FR_PG_DURABLE=1) is on for the run only: afterwards the stack is switched
# back to the fast mode, whatever the result, and the run's exit status is kept. See docs/chaos.md.
CHAOS_MESSAGES ?= 100000
chaos:
	$(RELEASE) cargo build --release --bins
	@FR_PG_DURABLE=1 bash dev/up.sh
	$(STACK_ENV); status=0; CHAOS_MESSAGES=$(CHAOS_MESSAGES) target/release/fetchreward-stress chaos || status=$$?; \
	  FR_PG_DURABLE=0 bash dev/up.sh >/dev/null && echo "[chaos] the local stack is back in the fast (not durable) mode"; \
	  exit $$status

## soak: a long load through one set of services; fails when a service's memory keeps growing (SOAK_MESSAGES=1000000)
SOAK_MESSAGES ?= 1000000
soak: up
	$(RELEASE) cargo build --release --bins
	$(STACK_ENV); SOAK_MESSAGES=$(SOAK_MESSAGES) target/release/fetchreward-stress soak
