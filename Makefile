# Set-up is part of every target: a fresh machine needs only python3 (>= 3.11) and make.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else a private copy in .tools/ (installed from PyPI on first use).
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
# Use this machine's Python; never download an interpreter.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3

.PHONY: help sync run test test-fast lint format db bench bench-jobs

help:
	@echo "make run     start distribution (:5000), management (:5001) and jobs (:5002) locally"
	@echo "make test    run every test"
	@echo "make test-fast  unit and integration tests, no end-to-end ones (tests/e2e)"
	@echo "make lint    ruff check, ruff format --check, mypy --strict on all the code and tests"
	@echo "make format  apply ruff's fixes and formatting"
	@echo "make db      apply schema.sql to DB_URL"
	@echo "make bench   benchmark distribution against docker-registry; writes BENCHMARKS.md"
	@echo "make bench-jobs  time the jobs on 1M links / 100k manifests; writes BENCHMARKS.md"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

sync: .venv/.synced

run: sync
	$(UV) run --frozen registry-local

test: sync
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test-fast: sync
	$(UV) run --frozen pytest -m "not e2e" tests/unit tests/integration $(PYTEST_ARGS)

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy --strict libs/common/registry_common libs/tools/registry_tools \
		services tests benchmarks deploy

format: sync
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

db: sync
	$(UV) run --frozen registry-schema

# The reference registry (CNCF Distribution, Debian package), installed on first use.
bench: sync
	@command -v docker-registry >/dev/null 2>&1 || { \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) \
			apt-get install -y -qq --no-install-recommends docker-registry; }
	timeout --signal=TERM --kill-after=30 600 $(UV) run --frozen python -m benchmarks $(BENCH_ARGS)

# Jobs on 1M blob links / 100k manifests in a scratch embedded PostgreSQL.
bench-jobs: sync
	timeout --signal=TERM --kill-after=30 900 $(UV) run --frozen python -m benchmarks.jobs

# Deployment (deploy/README.md). deploy-check works offline: it renders the kustomizations,
# validates every object against the Kubernetes schemas, lints the Dockerfiles and the gcloud
# script, and runs the manifest tests.
.PHONY: deploy-check images
deploy-check: sync
	$(UV) run --frozen python -m deploy.check
	$(UV) run --frozen pytest -q tests/integration/test_deploy_manifests.py

# The three service images and the tools image, tagged $(IMAGE_REPOSITORY)/<name>:$(IMAGE_TAG).
IMAGE_REPOSITORY ?= registry
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
images:
	@command -v docker >/dev/null 2>&1 || { \
		echo "make images: no docker command on this machine; install Docker to build images" >&2; \
		exit 1; }
	@docker info >/dev/null 2>&1 || { \
		echo "make images: the docker client cannot reach a Docker engine (docker info failed);" \
			"start one or point DOCKER_HOST at one. No image was built." >&2; \
		exit 1; }
	@set -e; for service in distribution management jobs tools; do \
		echo "docker build -f deploy/docker/$$service.Dockerfile -t $(IMAGE_REPOSITORY)/$$service:$(IMAGE_TAG) ."; \
		docker build -f deploy/docker/$$service.Dockerfile \
			-t $(IMAGE_REPOSITORY)/$$service:$(IMAGE_TAG) .; \
	done
