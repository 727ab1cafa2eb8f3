# quizmesh's entry points. `make install` once, then `make lint test`.
# buf runs from the version pinned in package-lock.json; `npx --no` refuses to fetch another.

PYTHON ?= python
BUF ?= npx --no -- buf

.DEFAULT_GOAL := help
.PHONY: help install gen lint test test-fast infra-up infra-down infra-status cluster-up cluster-down cluster-status dev release-contracts bench lock prometheus-up prometheus-down

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: ## Install the Python package with dev tools, and buf from npm.
	$(PYTHON) -m pip install -e '.[dev]'
	npm ci

lock: ## Refresh requirements.lock (versions and hashes the image installs) from pyproject.toml.
	PYTHON=$(PYTHON) bash scripts/lock.sh

prometheus-up: ## Start a local Prometheus with the shipped rules. ARGS="--target JOB=HOST:PORT ... --kafka HOST:PORT"
	bash scripts/prometheus.sh up $(ARGS)

prometheus-down: ## Stop what prometheus-up started.
	bash scripts/prometheus.sh down

gen: ## Regenerate the Python stubs from protos/.
	$(PYTHON) scripts/gen_protos.py

lint: ## ruff, mypy, buf lint and buf format.
	ruff check .
	ruff format --check .
	mypy .
	$(BUF) lint
	$(BUF) format --diff --exit-code

test: ## The whole suite: infra up, lint, every test (slow included), infra down.
	bash scripts/test.sh

test-fast: ## Every test not marked slow; integration tests need `make infra-up` first.
	$(PYTHON) -m pytest -m 'not slow'

infra-up: ## Start Kafka, Redis and PostgreSQL on 127.0.0.1.
	bash scripts/infra.sh up

infra-down: ## Stop what infra-up started.
	bash scripts/infra.sh down

infra-status: ## Show each infra component.
	bash scripts/infra.sh status

cluster-up: ## Start the multi-node topology: 3 Kafka brokers, a Redis Cluster (+ pub/sub Redis), PostgreSQL primary + replica.
	bash scripts/infra.sh up --topology cluster

cluster-down: ## Stop what cluster-up started.
	bash scripts/infra.sh down --topology cluster

cluster-status: ## Show each component of the multi-node topology.
	bash scripts/infra.sh status --topology cluster

bench: ## Benchmarks side by side (needs `make infra-up`; ~20 min); writes bench/out/results.json. ARGS=fanout|floor|pipeline|batching|fetch|sessions|topology
	$(PYTHON) -m pip install -q -e '.[dev,bench]'
	$(PYTHON) -m bench $(ARGS)

dev: ## Install quizmesh and run it embedded (one process, no Kafka/Redis/PostgreSQL) on :8080.
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -m apps dev

release-contracts: ## Refresh the buf breaking baseline; ARGS=--allow-breaking before the first release.
	bash scripts/release_contracts.sh $(ARGS)
