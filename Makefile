# Likeness developer commands. `make up` runs the whole system locally; `make test` runs every test layer.
# Every install comes from uv.lock (exact versions, hashes); `make lock` changes it, `make test-latest`
# tries the newest releases without it.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
STATE_DIR ?= $(or $(LIKENESS_STATE_DIR),.likeness)
PYTEST_ARGS ?=
UV_VERSION ?= 0.13.9
LATEST_VENV ?= .venv-latest
# uv: the venv given here, never a Python of uv's own download (use the machine's python3).
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never

.PHONY: install lock lock-upgrade lock-uv up down status test test-latest test-openai screenshot bench clean clean-state

install: $(STAMP)

# Reinstall only when the lock (or pyproject.toml) changed since the last install, so repeated runs start at
# once. Every service's group and the dev tools: `up` runs them all, and the tests import them all.
# --locked fails when pyproject.toml and uv.lock disagree; --inexact keeps pip and uv in the venv.
$(STAMP): pyproject.toml uv.lock deploy/uv-requirements.txt $(UV)
	$(UV) sync --quiet --locked --inexact --all-extras
	touch $@

# The venv with the pinned uv in it, and nothing else: enough to lock (a stale lock cannot be synced).
$(UV): deploy/uv-requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r deploy/uv-requirements.txt
	touch $@

# After editing pyproject.toml: bring the lock in line, changing as few pins as possible.
lock: $(UV)
	$(UV) lock

# Move every pin to the newest release allowed: run `make test-latest` first to see what that would break.
lock-upgrade: $(UV)
	$(UV) lock --upgrade

# Pin another uv (the installer itself) with the hashes of all its wheels.
lock-uv: $(UV)
	echo "uv==$(UV_VERSION)" | $(UV) pip compile --universal --generate-hashes --no-header --quiet - \
		| { sed -n 1,2p deploy/uv-requirements.txt; cat; } > deploy/uv-requirements.txt.new
	mv deploy/uv-requirements.txt.new deploy/uv-requirements.txt

up: install
	$(VENV)/bin/likeness up

down: install
	$(VENV)/bin/likeness down

status: install
	$(VENV)/bin/likeness status

# The browser tests (tests/browser) drive Debian's chromium, and the voice tests speak with Debian's espeak-ng:
# installed here when missing, never downloaded by Playwright.
test: install
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || echo "could not install chromium: the browser tests will fail"
	@command -v espeak-ng >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null; } || echo "could not install espeak-ng: the voice tests will fail"
	$(PY) -m pytest $(PYTEST_ARGS)

# The newest release of every dependency, ignoring the lock, in its own venv: the unit and integration tests,
# then a list of what moved and what broke. Not part of `make test` or CI; run it before `make lock-upgrade`.
test-latest: $(STAMP)
	rm -rf $(LATEST_VENV)
	$(UV) venv --quiet --python $(PY) $(LATEST_VENV)
	$(UV) pip install --quiet --python $(LATEST_VENV)/bin/python --upgrade --refresh \
		-r pyproject.toml --all-extras --group dev
	$(PY) -m tests.latest $(LATEST_VENV) -- $(PYTEST_ARGS)

# The LLM client's tests on the oldest openai SDK we support, the last 2.x and the newest 3.x (the lock has its own).
OPENAI_VERSIONS ?= 1.55.3 2.54.0 3.63.0
test-openai: $(STAMP)
	@set -e; for v in $(OPENAI_VERSIONS); do echo "== openai $$v"; \
		$(UV) run --quiet --frozen --all-extras --with "openai==$$v" python -m pytest -q -p no:cacheprovider \
		tests/unit/chat tests/unit/planner tests/integration/test_llm_planner.py | tail -n 1; done

# The README's picture of the page (docs/page.png): the system up in a scratch directory, a picture asked in the chat.
screenshot: install
	$(PY) docs/screenshot.py

# Every benchmark script; bench/_*.py are their shared parts and helper processes, not benchmarks.
bench: install
	@set -e; for f in bench/[!_]*.py; do [ -e "$$f" ] || continue; echo "== $$f"; $(PY) "$$f"; done

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# Deletes the local NATS and Postgres data: a separate, explicit target so `make clean` never does it.
clean-state: install
	$(VENV)/bin/likeness --state-dir $(STATE_DIR) down
	rm -rf $(STATE_DIR)
