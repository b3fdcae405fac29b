# The verbs: dev, test, lint, build, bench, deploy. Each installs what it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
SAMVENV := .venv-sam
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null)
PORT ?= 3000
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: dev test lint build bench deploy validate install install-sam install-chromium install-node clean

# uv when the machine has it (fast), else pip installs uv first.
$(BIN)/.installed: pyproject.toml
	@if [ -z "$(UV)" ] && ! command -v uv >/dev/null; then $(PY) -m pip install -q --disable-pip-version-check uv; fi
	@uv venv -q --allow-existing -p ">=3.11" $(VENV)
	@VIRTUAL_ENV=$(VENV) uv pip install -q -e ".[dev]"
	@touch $@

# aws-sam-cli pins boto3, pydantic and click: it lives in its own virtualenv.
$(SAMVENV)/.installed:
	@if ! command -v uv >/dev/null; then $(PY) -m pip install -q --disable-pip-version-check uv; fi
	@uv venv -q --allow-existing -p ">=3.11" $(SAMVENV)
	@VIRTUAL_ENV=$(SAMVENV) uv pip install -q aws-sam-cli cfn-lint
	@touch $@

install: $(BIN)/.installed
install-sam: $(SAMVENV)/.installed

# Debian's chromium for the docs-page browser test (Playwright cannot download its own here).
install-chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will fail"; fi

# The Node clients and CLIs the tests drive (openai-node, the Vercel AI SDK, openai-agents, Claude Code,
# Gemini CLI, Codex CLI), pinned by tests/node/package-lock.json; from the npm registry only.
NODE_DIR := tests/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install-node: $(NODE_DIR)/node_modules/.installed

# Serve the gateway on http://127.0.0.1:$(PORT): embedded moto DynamoDB, pisces.yaml, mock upstream, demo key.
dev: install
	@PORT=$(PORT) $(BIN)/python -m pisces_gateway.dev

test: install install-sam install-chromium install-node
	@$(BIN)/ruff check .
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install install-sam
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check . || true
	@$(SAMVENV)/bin/sam validate --lint
	@$(SAMVENV)/bin/cfn-lint template.yaml

validate: install-sam
	@$(SAMVENV)/bin/sam validate --lint

# sam build needs python3.13 (Lambda's runtime) on PATH: pyenv's, when there is one.
PY313 := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin))
build: install-sam
	@PATH="$(if $(PY313),$(PY313):)$$PATH" $(SAMVENV)/bin/sam build

bench: install
	@$(BIN)/python bench/latency.py

deploy: build
	@$(SAMVENV)/bin/sam deploy

clean:
	rm -rf $(VENV) $(SAMVENV) $(NODE_DIR)/node_modules .aws-sam .pytest_cache .ruff_cache
