# The two quick-start commands: `make app` (install + open the app on the offline world) and
# `make test` (install dev dependencies + browser, then lint, format check, type check and the whole suite).
# Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: app test check install install-dev browser clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@ $(VENV)/.installed-app

install: $(VENV)/.installed-app
install-dev: $(VENV)/.installed-dev

# Debian's chromium for the real-browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser test (needs root/apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

app: install
	$(BIN)/streamlit run app.py --server.headless true --browser.gatherUsageStats false

# Quality gates, in order: lint, format check, type check of core/ (config in pyproject.toml).
check: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core

# pytest exits 5 when PYTEST_ARGS select no tests; that is not a failure of the code.
test: check browser
	$(BIN)/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

clean-venv:
	rm -rf $(VENV)
