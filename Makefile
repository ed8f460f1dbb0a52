# transferjs: two commands do everything on a fresh machine.
#   make demo   the main job on the built-in default (see README)
#   make test   the test suite
# Both create .venv and js/node_modules from the committed lock files when they
# are missing or older than the lock files, and skip the install otherwise.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.transferjs-installed
JS_STAMP := js/node_modules/.transferjs-installed
OUT ?= demo-out

.PHONY: setup browser test demo lock clean

setup: $(PY_STAMP) $(JS_STAMP)

$(PY_STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(JS_STAMP): js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's Chromium, for the browser test of exported bundles (root installs it; others are told how).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

# Two workers (CI has 2 cores; much of a test is single-threaded: onnx2tf, Node.js, start-up); tests that
# share a heavy session fixture carry one xdist_group so it is built once.
test: setup browser
	$(PY) -m pytest -n 2 --dist loadgroup --durations=30 $(PYTEST_ARGS)

demo: setup
	$(PY) -m transferjs.demo --out $(OUT) $(if $(DATA),--data $(DATA))

# Re-resolve every Python pin from pyproject.toml into requirements.lock (needs the registry).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[test,demo]'
	( sed -n '1,2p' requirements.lock; .lock-venv/bin/pip freeze --all --exclude-editable \
	  | grep -v -E '^(pip|transferjs)==' | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' ) > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean:
	rm -rf $(VENV) js/node_modules $(OUT)
