# The README's two commands: `make serve` (embedded service) and `make test` (lint + the whole suite).
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: serve test lint audit

$(STAMP): pyproject.toml scripts/setup.sh api/web/package.json api/web/package-lock.json
	bash scripts/setup.sh
	touch $(STAMP)

# The page's bundle is rebuilt when its sources change (set-up builds it the first time).
WEB_DIST := api/web/dist/index.html
$(WEB_DIST): $(STAMP) api/web/index.html api/web/vite.config.js $(wildcard api/web/src/*) $(wildcard api/web/public/*)
	cd api/web && npm run build --silent

# `make serve PORT=8080 HOST=0.0.0.0` (a non-loopback HOST needs DVD360_AUTH=1, or ARGS=--insecure).
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
serve: $(STAMP) $(WEB_DIST)
	$(VENV)/bin/dvd360 serve --host $(HOST) --port $(PORT) $(ARGS)

test: $(STAMP) $(WEB_DIST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Needs pypi.org's vulnerability data (not reachable from CI machines: see README "Dependency audit").
audit: $(STAMP)
	$(VENV)/bin/pip-audit --strict --progress-spinner off
