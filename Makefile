# The verbs: dev, test, lint, build, bench, deploy (logs, sync). Each installs what it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
SAMVENV := .venv-sam
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null)
PORT ?= 3000
SAM := $(SAMVENV)/bin/sam
# The deployed stack: its name and region as `sam deploy --guided` saved them in samconfig.toml (the
# region then comes from your AWS profile, not from this file; STACK= / REGION= override).
STACK ?= $(or $(shell sed -n 's/^stack_name *= *"\(.*\)"/\1/p' samconfig.toml 2>/dev/null | tail -1),pisces)
REGION ?= $(shell sed -n 's/^region *= *"\(.*\)"/\1/p' samconfig.toml 2>/dev/null | tail -1)
REGION_ARG := $(if $(REGION),--region $(REGION))
# sam validate needs some region, and a template check none in particular
LINT_REGION := $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),us-east-1)

.PHONY: dev test lint build bench bench-peers bench-cold bench-streams bench-paired deploy logs sync validate install install-sam install-chromium install-node clean

# uv when the machine has it (fast), else pip installs uv first.
$(BIN)/.installed: pyproject.toml
	@if [ -z "$(UV)" ] && ! command -v uv >/dev/null; then \
	  echo "pisces: installing uv (pip)..."; $(PY) -m pip install -q --disable-pip-version-check uv; fi
	@echo "pisces: $(VENV): the Python packages of pyproject.toml (about a minute the first time)..."
	@uv venv -q --allow-existing -p ">=3.11" $(VENV)
	@VIRTUAL_ENV=$(VENV) uv pip install -e ".[dev]"
	@touch $@
	@echo "pisces: $(VENV) is ready"

# aws-sam-cli pins boto3, pydantic and click: it lives in its own virtualenv.
$(SAMVENV)/.installed:
	@if ! command -v uv >/dev/null; then \
	  echo "pisces: installing uv (pip)..."; $(PY) -m pip install -q --disable-pip-version-check uv; fi
	@echo "pisces: $(SAMVENV): aws-sam-cli and cfn-lint (a minute or two the first time)..."
	@uv venv -q --allow-existing -p ">=3.11" $(SAMVENV)
	@VIRTUAL_ENV=$(SAMVENV) uv pip install aws-sam-cli cfn-lint
	@touch $@
	@echo "pisces: $(SAMVENV) is ready"

install: $(BIN)/.installed
install-sam: $(SAMVENV)/.installed

# Debian's chromium for the docs-page browser test (Playwright cannot download its own here).
install-chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
	  echo "pisces: installing Debian's chromium (apt-get) for the browser tests..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will fail"; fi

# Debian's Go for the docs page's Go examples (tests/browser/test_docs_examples.py runs them with the
# standard library only; without go they are checked for their URL and headers, not run).
.PHONY: install-go
install-go:
	@if ! command -v go >/dev/null && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null) \
	  || echo "go could not be installed: the docs page's Go examples will be checked, not run"; fi
test: install-go

# The Node clients and CLIs the tests drive (openai-node, the Vercel AI SDK, openai-agents, Claude Code,
# Gemini CLI, Codex CLI), pinned by tests/node/package-lock.json; from the npm registry only.
NODE_DIR := tests/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@echo "pisces: $(NODE_DIR): the Node clients and CLIs of package-lock.json (npm ci)..."
	@cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install-node: $(NODE_DIR)/node_modules/.installed

# Serve the gateway on http://127.0.0.1:$(PORT): embedded moto DynamoDB, pisces.yaml, mock upstream, demo key.
dev: install
	@PORT=$(PORT) $(BIN)/python -m pisces_gateway.dev

# the tests' own AWS calls go to moto: any region will do (deploys take yours, from your AWS profile)
test: export AWS_DEFAULT_REGION := $(LINT_REGION)
test: install install-sam install-chromium install-node
	@$(BIN)/ruff check .
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install install-sam
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check . || { echo "pisces: formatting is off: run $(BIN)/ruff format ."; exit 1; }
	@AWS_DEFAULT_REGION=$(LINT_REGION) $(SAM) validate --lint
	@$(SAMVENV)/bin/cfn-lint template.yaml

validate: install-sam
	@AWS_DEFAULT_REGION=$(LINT_REGION) $(SAM) validate --lint

# sam build needs python3.13 (Lambda's runtime) on PATH: pyenv's, when there is one.
PY313 := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin))
WITH_PY313 := PATH="$(if $(PY313),$(PY313):)$$PATH"
build: install-sam
	@$(WITH_PY313) $(SAM) build

bench: install
	@$(BIN)/python bench/latency.py

# Pisces side by side with LiteLLM proxy and Portkey's gateway (each installed under bench/out/ on first use).
# GATEWAY_PYTHON=/usr/bin/python3.11: a money-off gateway on that interpreter too (a build with PGO and LTO, say;
# pyenv's are built without them: bench/RESULTS.md, performance part 13)
bench-peers: install
	@$(BIN)/python bench/peers.py $(if $(GATEWAY_PYTHON),--python $(GATEWAY_PYTHON))

# The gateway's cold start (run.sh to its first 200) and its import budget
bench-cold: install
	@$(BIN)/python bench/coldstart.py

# Streams: time to first byte through the gateway, chunks forwarded as they arrive, encoder events/s
bench-streams: install
	@$(BIN)/python bench/streams.py

# One change against another commit, both gateways in the same rounds: make bench-paired BEFORE=<rev> [STREAM=1] [CLIENT=gemini]
# [BEFORE_PYTHON=/usr/bin/python3.11: the BEFORE gateway on that interpreter; BEFORE=HEAD and it: two interpreters]
bench-paired: install
	@test -n "$(BEFORE)" || { echo "pisces: say which commit: make bench-paired BEFORE=<rev>"; exit 1; }
	@rm -rf bench/out/before && mkdir -p bench/out/before && git archive $(BEFORE) | tar -x -C bench/out/before
	@$(BIN)/python bench/paired.py --before bench/out/before $(if $(STREAM),--stream) $(if $(CLIENT),--client $(CLIENT)) \
	  $(if $(BEFORE_PYTHON),--before-python $(BEFORE_PYTHON))

# The first deploy is guided (stack name, region, the parameters: upstream keys, EnableMock...) and saves
# the answers in samconfig.toml; later ones deploy from there. GUIDED=1 asks again.
deploy: build
	@if [ -n "$(GUIDED)" ] || ! grep -q '^region *=' samconfig.toml; then \
	  $(SAM) deploy --guided; else $(SAM) deploy; fi

# The gateway's logs (one JSON line per request), followed. FUNCTION=AdminFunction for the admin's.
FUNCTION ?= GatewayFunction
logs: install-sam
	@$(SAM) logs --stack-name $(STACK) $(REGION_ARG) --name $(FUNCTION) --tail

# Code changes straight to the deployed stack as you save (sam sync --watch: no change set; for a dev stack).
sync: install-sam
	@$(WITH_PY313) $(SAM) sync --stack-name $(STACK) $(REGION_ARG) --watch

clean:
	rm -rf $(VENV) $(SAMVENV) $(NODE_DIR)/node_modules .aws-sam .pytest_cache .ruff_cache
