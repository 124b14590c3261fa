# The README's two commands: `make serve` (embedded service) and `make test` (lint + the whole suite).
# Set-up happens on first use, in steps (scripts/setup.sh): `make serve` installs only what serving needs (torch,
# the serving extras, the page); `make test` adds the test tools. `make setup` installs for serving, starts nothing.
# torch is the CPU build on a machine without an NVIDIA GPU: TORCH_INDEX_URL, DVD360_TORCH_SPEC and the pip index
# settings choose where it comes from (see scripts/setup.sh).
VENV ?= .venv
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup serve test lint audit

$(SERVE_STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh serve
	touch $@

$(TEST_STAMP): $(SERVE_STAMP)
	bash scripts/setup.sh test
	touch $@

# The page's bundle: built here only (once per change of its sources), never by the Python steps.
WEB_DIST := api/web/dist/index.html
$(WEB_DIST): scripts/setup.sh api/web/package.json api/web/package-lock.json api/web/index.html api/web/vite.config.js \
		$(wildcard api/web/src/*) $(wildcard api/web/public/*)
	bash scripts/setup.sh page

setup: $(SERVE_STAMP) $(WEB_DIST)

# `make serve PORT=8080 HOST=0.0.0.0` (a non-loopback HOST needs DVD360_AUTH=1, or ARGS=--insecure).
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
serve: $(SERVE_STAMP) $(WEB_DIST)
	$(VENV)/bin/dvd360 serve --host $(HOST) --port $(PORT) $(ARGS)

# CI=true (set by .ci/run and by CI services) turns tests that would skip for a missing tool into failures.
test: $(TEST_STAMP) $(WEB_DIST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Needs pypi.org's vulnerability data (not reachable from CI machines: see README "Dependency audit").
audit: $(TEST_STAMP)
	$(VENV)/bin/pip-audit --strict --progress-spinner off
