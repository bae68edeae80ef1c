# AI Saemaul Academy: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install system-deps services lint messages clean

## make demo: install everything and run the platform on 127.0.0.1 with demo accounts
demo: install
	$(BIN)/academy demo

## make test: install what the tests need and run the whole suite
test: install system-deps services
	ACADEMY_TEST_REQUIRE_SERVICES=$${ACADEMY_TEST_REQUIRE_SERVICES:-$${CI:+1}} $(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

## Debian packages the tests use: Chromium for the browser tests, CJK fonts for Korean screenshots
system-deps:
	@bash scripts/install-system-deps.sh

## Start the local PostgreSQL and Redis when they are installed but stopped
services:
	@bash scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .

## Refresh the message catalogues after changing user-facing text
messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o academy/translations/messages.pot .
	$(BIN)/pybabel update -i academy/translations/messages.pot -d academy/translations --no-fuzzy-matching

clean:
	rm -rf $(VENV) instance tests/artifacts .pytest_cache
