# AI Saemaul Academy: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The learners' kernel environment (lab and grader), from Debian's world-readable interpreter
# so that the grader's sandbox, which cannot see /root, can run it.
LAB_PYTHON_BASE ?= /usr/bin/python3
LAB    := .venv-lab
LAB_STAMP := $(LAB)/.installed-$(shell cat hub_config/lab-requirements.txt | cksum | cut -d' ' -f1)
# Python's own default: cache compiled modules in __pycache__ (git ignores them).  A machine that sets
# PYTHONDONTWRITEBYTECODE makes every process compile the academy package from source again (0.45 s of the 1.6 s
# an app start takes) and every test process rewrite every test module's assertions again (about half of its
# collection); a test run starts hundreds of such processes.  The grader's sandbox sets it again for kernels.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test install lab-env proxy system-deps test-deps services lint messages clean

## make demo: install everything and run the platform on 127.0.0.1 with demo accounts
demo: system-deps
	@$(MAKE) --no-print-directory -j3 install lab-env proxy
	$(BIN)/academy demo

# Test processes (pytest-xdist): most tests wait on kernels, servers and the browser rather than on a CPU, so three
# more than the CPUs, at most 6.  On two CPUs, a fresh clone's `.ci/run` took 782 s with four processes, 702 s with
# five and 729 s with six (each test slower).  Each test file stays in one process (--dist loadfile): a file's
# expensive module fixtures are built once; files start longest first (tests/conftest.py SLOW_FILES, kept in
# that order by --no-loadscope-reorder).  TEST_WORKERS=0: no xdist.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); n=$$((n + 3)); echo $$((n > 6 ? 6 : n)))

## make test: install what the tests need and run the whole suite
test: test-deps
	@$(MAKE) --no-print-directory -j4 install lab-env proxy services  # independent: side by side
	ACADEMY_TEST_REQUIRE_SERVICES=$${ACADEMY_TEST_REQUIRE_SERVICES:-$${CI:+1}} $(BIN)/python -m pytest \
		$(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Both environments are installed by uv (from PyPI, into the venvs pip would fill): on a fresh clone of this 2-CPU
# machine the two took 34 s side by side, compiling included, where pip took about 70 s.  It looks in pip's local wheel folders too
# (PIP_FIND_LINKS, or pip's find-links setting), where a machine may keep wheels such as the CPU build of torch
# that lab-requirements.txt pins.  Modules are compiled at install, as pip does: the grader's sandboxed kernels
# cannot write bytecode caches, and the test processes would all compile the same modules as they start.
UV := $(BIN)/uv
uv_links = $(foreach dir,$(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)),\
	--find-links $(dir))

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5,<1'

$(STAMP): pyproject.toml | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python $(uv_links) -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

lab-env: $(LAB_STAMP)

$(LAB_STAMP): hub_config/lab-requirements.txt | $(UV)
	test -x $(LAB)/bin/python || $(LAB_PYTHON_BASE) -m venv $(LAB)
	$(UV) pip install --quiet --compile-bytecode --python $(LAB)/bin/python $(uv_links) -r hub_config/lab-requirements.txt
	rm -f $(LAB)/.installed-*
	touch $@

## configurable-http-proxy for the local JupyterHub and axe-core for tests/web/test_accessibility.py, from the npm
## registry into ./node_modules (pinned by the lock file)
proxy: node_modules/.bin/configurable-http-proxy

node_modules/.bin/configurable-http-proxy: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Debian packages: bubblewrap (grader sandbox) and python3-venv; for tests also Chromium and CJK fonts
system-deps:
	@bash scripts/install-system-deps.sh

test-deps:
	@bash scripts/install-system-deps.sh --test

## Start the local PostgreSQL and Redis when they are installed but stopped
services:
	@bash scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .

## Refresh the message catalogues after changing user-facing text
messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o academy/translations/messages.pot .
	$(BIN)/pybabel update -i academy/translations/messages.pot -d academy/translations --no-fuzzy-matching -w 100

clean:
	rm -rf $(VENV) $(LAB) instance tests/artifacts .pytest_cache
