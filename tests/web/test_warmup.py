"""``academy.web.warmup.warm_templates``: every page template compiled at process start, through a bytecode
cache under the data directory that a later process reads instead of compiling."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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


# --- SQL statements ---------------------------------------------------------------------------------------------


@pytest.fixture
def synthetic(app: Flask) -> Flask:
    """The shipped catalogue with 40 synthetic learners (enrollments, grades, completions) and the statistics
    built from them."""
    import datetime as dt

    from academy.catalog.services import load_catalog
    from academy.certificates.services import Issuer
    from academy.extensions import db
    from academy.stats import page
    from academy.synth import synthesize
    from tests.support import COURSES

    with app.app_context():
        load_catalog(db.session, COURSES)
        db.session.commit()
        synthesize(db.session, learners=40, issuer=Issuer.from_app(),
                   now=dt.datetime(2026, 3, 15, 3, 0, tzinfo=dt.UTC))
        page.recount(db.session)
        db.session.commit()
    return app


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_after_the_warm_up_a_learner_s_first_dashboard_and_an_admin_s_first_views_compile_no_sql(
        synthetic: Flask, app_config: dict[str, Any], make_user: Any) -> None:
    from sqlalchemy import delete, select

    from academy import create_app
    from academy.enrollment.models import Enrollment, EnrollmentStatus
    from academy.extensions import db
    from academy.stats.models import CachedFigures
    from academy.users.models import Company, User
    from academy.users.passwords import hash_password
    from academy.web.warmup import warm_statements
    from tests.conftest import PASSWORD, login
    from tests.support import sql_run

    with synthetic.app_context():
        # The first enrolled learner (the warm-up takes the one with the latest submission), signed in as usual.
        learner = db.session.get(User, db.session.scalars(select(Enrollment.user_id).where(
            Enrollment.status == EnrollmentStatus.enrolled).order_by(Enrollment.id)).first())
        learner.password_hash = hash_password(PASSWORD)
        email = learner.email
        company = db.session.scalars(select(Company.id).order_by(Company.id.desc())).first()
        db.session.commit()
    admin = "statistics-admin@example.kr"
    make_user("admin", email=admin)
    # Values the warm-up does not use: the last company (it takes the first), other regions, other days.
    views = [f"/admin/?company={company}", "/admin/?region=pohang", "/admin/?industry=steel",
             "/admin/?job_role=quality", "/admin/?from=2025-11-17&to=2026-02-09",
             "/admin/?from=2025-12-01&to=2026-01-31"]

    def visit(app: Flask) -> list[str]:
        people = app.test_client(), app.test_client()
        for client, who in zip(people, (email, admin), strict=True):
            assert login(client, who).status_code == 302
        learner_client, admin_client = people

        def pages() -> None:
            assert learner_client.get("/dashboard").status_code == 200
            for url in views:
                assert admin_client.get(url).status_code == 200, url

        with sql_run(app, compiled_only=True) as compiled:
            pages()
        return compiled

    cold, warmed = create_app(app_config), create_app(app_config)  # two new processes, each with its own engine
    try:
        assert len(visit(cold)) > 20
        with warmed.app_context():  # the figures the first visit kept: the second computes them again
            db.session.execute(delete(CachedFigures))
            db.session.commit()
        assert warm_statements(warmed) == 11  # the learner's and the admin's pages, ten kinds of view
        # The one statement a read-only warm-up cannot compile: keeping a view's figures once computed.
        compiled = [sql for sql in visit(warmed) if not sql.startswith("INSERT INTO stats_cache")]
        assert compiled == [], "\n\n".join(compiled)
    finally:
        for other in (cold, warmed):
            with other.app_context():
                db.engine.dispose()


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_the_warm_up_stops_at_its_budget_and_never_stops_a_server(app: Flask, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    from sqlalchemy import text

    from academy.extensions import db
    from academy.web.warmup import warm_statements

    ticks = iter(range(100))
    assert warm_statements(app, budget_s=2.5, clock=lambda: float(next(ticks))) == 3  # 0 s, 1 s, 2 s: started
    with app.app_context():  # a database not set up yet: logged, the server starts, the requests will say it
        db.session.execute(text("DROP TABLE stats_learner_track"))
        db.session.commit()
    with caplog.at_level(logging.WARNING, logger="academy.web.warmup"):
        assert warm_statements(app) == 1
    assert "statement warm-up skipped after 1 views" in caplog.text


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_process_forked_after_the_warm_up_opens_its_own_connections(app: Flask) -> None:
    import os

    from sqlalchemy import text

    from academy.extensions import db
    from academy.web.warmup import own_pool_after_fork, warm_statements

    warm_statements(app)
    own_pool_after_fork(app)
    with app.app_context():
        parent = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.session.remove()  # back in the pool, open: what a forked worker would find
    pid = os.fork()
    if pid == 0:  # the child: a connection of its own, never the parent's
        code = 1
        try:
            with app.app_context():
                child = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                code = 0 if child != parent else 2
                db.session.remove()
                db.engine.dispose()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with app.app_context():  # the parent's connection still works, and is still the same one
        assert db.session.execute(text("SELECT pg_backend_pid()")).scalar_one() == parent
