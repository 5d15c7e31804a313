# Set-up is part of every target: a fresh machine needs only python3 (>= 3.11) and make.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else a private copy in .tools/ (installed from PyPI on first use).
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
# Use this machine's Python; never download an interpreter.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3

.PHONY: help sync run test lint format db

help:
	@echo "make run     start distribution (:5000), management (:5001) and jobs (:5002) locally"
	@echo "make test    run every test"
	@echo "make lint    ruff check, ruff format --check, mypy --strict on libs/common"
	@echo "make format  apply ruff's fixes and formatting"
	@echo "make db      apply schema.sql to DB_URL"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml libs/common/pyproject.toml services/*/pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

sync: .venv/.synced

run: sync
	$(UV) run --frozen registry-local

test: sync
	$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy --strict libs/common/registry_common

format: sync
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

db: sync
	$(UV) run --frozen registry-migrate
