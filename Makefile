# Likeness developer commands. `make up` runs the whole system locally; `make test` runs every test layer.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STATE_DIR ?= $(or $(LIKENESS_STATE_DIR),.likeness)
PYTEST_ARGS ?=

.PHONY: install up down status test bench clean clean-state

install: $(STAMP)

# Reinstall only when pyproject.toml changed since the last install, so repeated runs start at once.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

up: install
	$(VENV)/bin/likeness up

down: install
	$(VENV)/bin/likeness down

status: install
	$(VENV)/bin/likeness status

# The browser tests (tests/browser) drive Debian's chromium: installed here when missing, never downloaded by Playwright.
test: install
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || echo "could not install chromium: the browser tests will fail"
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	@set -e; for f in bench/*.py; do [ -e "$$f" ] || continue; echo "== $$f"; $(PY) "$$f"; done

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# Deletes the local NATS and Postgres data: a separate, explicit target so `make clean` never does it.
clean-state: install
	$(VENV)/bin/likeness --state-dir $(STATE_DIR) down
	rm -rf $(STATE_DIR)
