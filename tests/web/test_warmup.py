"""``academy.web.warmup.warm_templates``: every page template compiled at process start, through a bytecode
cache under the data directory that a later process reads instead of compiling."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask, render_template_string


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_every_template_is_compiled_once_and_kept_for_the_next_process(app: Flask) -> None:
    from academy.web.warmup import warm_templates

    names = app.jinja_env.list_templates(filter_func=lambda name: name.endswith(".html"))
    assert len(names) > 50 and "dashboard/index.html" in names
    assert warm_templates(app) == len(names)
    cache = Path(app.config["ACADEMY_SETTINGS"].data_dir) / "cache" / "templates"
    kept = sorted(cache.iterdir())
    assert len(kept) == len(names)
    # What the cache holds is used: a fresh environment with the same cache loads the code instead of compiling.
    fresh = app.jinja_env.overlay()
    fresh.cache = {}
    compiled: list[str] = []
    original = fresh.compile
    fresh.compile = lambda *args, **kwargs: compiled.append(args[1]) or original(*args, **kwargs)  # type: ignore[method-assign]
    fresh.get_template("dashboard/index.html")
    assert compiled == []


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_a_template_that_does_not_compile_is_logged_and_the_rest_are_compiled(
        app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    from jinja2 import ChoiceLoader, DictLoader

    from academy.web.warmup import warm_templates

    app.jinja_loader  # noqa: B018 - Flask builds its loader lazily
    app.jinja_env.loader = ChoiceLoader([DictLoader({"broken.html": "{% if %}"}), app.jinja_env.loader])
    names = app.jinja_env.list_templates(filter_func=lambda name: name.endswith(".html"))
    with caplog.at_level(logging.ERROR, logger="academy.web.warmup"):
        assert warm_templates(app) == len(names) - 1
    assert "broken.html does not compile" in caplog.text
    with app.test_request_context():
        assert render_template_string("{{ 1 + 1 }}") == "2"
