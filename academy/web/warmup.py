"""Do at server start what a fresh process would otherwise do on its first visitors' requests.

* **Templates.** Jinja compiles a template the first time it is rendered: in a fresh process the learner
  dashboard's first request spent 150 of its 240 ms compiling six templates.  :func:`warm_templates` compiles them
  all, from a bytecode cache under the data directory, which Jinja keys by each template's source, so an edited
  template is compiled again.
* **SQL statements.** SQLAlchemy compiles each shape of statement once per process and keeps the SQL in the
  engine's cache; the first learner dashboard and the first statistics view of each kind of filter paid for
  dozens of compilations (measured on 10,000 learners: a period's first view 110 ms, the next ones 18 ms; a
  learner dashboard 60 ms, the next learner's 25 ms).  :func:`warm_statements` computes, read-only, one view of
  each kind and one learner's dashboard (as that learner, in a throwaway request), then rolls back: nothing is
  written or kept, only the compiled SQL.

A production server (``wsgi.py``: each gunicorn worker, after every restart) does both before it takes requests.
With ``gunicorn --preload`` the workers are forked from the process that warmed up: :func:`own_pool_after_fork`
gives each forked process a pool of its own, so that no database connection is shared across a fork.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask
from jinja2 import FileSystemBytecodeCache

log = logging.getLogger(__name__)


def warm_templates(app: Flask) -> int:
    """Compile every ``.html`` template of ``app`` (through the bytecode cache in ``<data dir>/cache/templates``);
    returns how many.  A template that fails to compile is left for its request to report."""
    cache_dir = Path(app.config["ACADEMY_SETTINGS"].data_dir) / "cache" / "templates"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        app.jinja_env.bytecode_cache = FileSystemBytecodeCache(str(cache_dir))
    except OSError as exc:  # a read-only data directory: compile without the cache
        log.warning("template bytecode cache unavailable in %s: %s", cache_dir, exc)
    compiled = 0
    for name in app.jinja_env.list_templates(filter_func=lambda name: name.endswith(".html")):
        try:
            app.jinja_env.get_template(name)
            compiled += 1
        except Exception:  # noqa: BLE001 - rendering it will raise the same error where it can be seen
            log.exception("template %s does not compile", name)
    return compiled


#: Seconds :func:`warm_statements` may spend (each worker, at start); what it has not reached by then is compiled
#: on its first request as before.  About 1.5 s on 100,000 learners (what its views take to compute there, added up).
WARM_BUDGET_S = 10.0


def _stats_views(session: Any) -> list[dict[str, str]]:
    """One statistics view of each kind an admin chooses alone (each compiles its own statements), as the page's
    query string: none, a track, a course, a cohort, a company, a region, an industry, a job role, a period that
    starts and ends inside a month (whole months and the days around them), and one of whole months."""
    from sqlalchemy import func, select

    from academy.catalog.models import Course, Track
    from academy.enrollment.models import Cohort
    from academy.stats.models import LearnerCourse
    from academy.stats.queries import month_end
    from academy.users import reference
    from academy.users.models import Company

    first = {name: session.scalar(select(model.id).order_by(model.id).limit(1))
             for name, model in (("track", Track), ("course", Course), ("cohort", Cohort), ("company", Company))}
    # The period: the days with enrollments less one at each end, so that it finds learners (some statements run
    # only for a period with completions) and starts and ends inside a month.
    earliest, latest = session.execute(select(func.min(LearnerCourse.enrolled_on),
                                              func.max(LearnerCourse.enrolled_on))).one()
    if earliest is None or (latest - earliest).days < 2:
        earliest = latest = dt.date.today() - dt.timedelta(days=40)
    views: list[dict[str, str]] = [{}]
    views += [{name: str(value)} for name, value in first.items() if value is not None]
    views += [{"region": next(iter(reference.REGIONS))}, {"industry": next(iter(reference.INDUSTRIES))},
              {"job_role": next(iter(reference.JOB_ROLES))},
              {"from": (earliest + dt.timedelta(days=1)).isoformat(),
               "to": (latest - dt.timedelta(days=1)).isoformat()}]
    # And whole months (their statements are others): from the month after the first day's to the month before the
    # last day's.
    first_month = month_end(earliest) + dt.timedelta(days=1)
    last_month_end = latest.replace(day=1) - dt.timedelta(days=1)
    if first_month < last_month_end:
        views.append({"from": first_month.isoformat(), "to": last_month_end.isoformat()})
    return views


def _learner_pages(session: Any) -> None:
    """``/dashboard`` of one enrolled learner with graded work, computed and rendered with the layout that every
    signed-in page draws (menu, inbox, open lab), as that learner in this throwaway request: nothing is kept."""
    from flask import render_template
    from flask_login import login_user, logout_user
    from markupsafe import Markup
    from sqlalchemy import select

    from academy import stamps
    from academy.dashboard.views import build_content
    from academy.db import utcnow
    from academy.enrollment.models import Enrollment, EnrollmentStatus
    from academy.grading.models import Submission
    from academy.users.models import User

    enrolled = select(Enrollment.user_id).where(Enrollment.status == EnrollmentStatus.enrolled)
    user_id = session.scalar(select(Submission.user_id).where(Submission.user_id.in_(enrolled))
                             .order_by(Submission.id.desc()).limit(1))
    if user_id is None:
        user_id = session.scalar(enrolled.order_by(Enrollment.id.desc()).limit(1))
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        return
    login_user(user)
    try:
        stamps.read(session, (stamps.CATALOG, stamps.user_scope(user.id)))
        content, _ = build_content(user.id, utcnow())
        render_template("dashboard/index.html", content=Markup(content))  # noqa: S704 - rendered by us
    finally:
        logout_user()


def _admin_home(session: Any) -> None:
    """What the admin's home reads besides the figures: its counters, the filters' choices in each language, the
    last rebuild and the lookup of kept figures (the statement is the same for every key)."""
    from academy.admin.views import home_counts
    from academy.stats import page
    from academy.stats.models import CachedFigures
    from academy.stats.refresh import last_refresh

    session.expunge_all()  # the lookups by key below go to the database as a request's do
    home_counts(session)
    for locale in ("ko", "en"):
        page.filter_choices(session, locale)
    state = last_refresh(session)
    if state is not None:  # the page reads it again after committing the figures it keeps: another statement
        session.expire(state)
        state.refreshed_at  # noqa: B018 - loads it
    session.get(CachedFigures, "")


def warm_statements(app: Flask, *, budget_s: float = WARM_BUDGET_S, clock: Callable[[], float] = time.monotonic
                    ) -> int:
    """Compile the SQL of the pages whose first request would otherwise compile most: the learner dashboard with
    the layout of every signed-in page, and the admin's home with the statistics for each kind of filter
    (:func:`_stats_views`, grouped as the page groups by default), by computing them once and rolling back.
    Returns how many views it computed (the learner's and the admin's pages count as one); stops when ``budget_s``
    is spent.  Nothing here may stop a server from starting: a database that is not there or not set up yet is
    logged and left for the requests to report."""
    from academy.extensions import db
    from academy.stats import page, queries

    started = clock()
    done = 0
    with app.test_request_context():
        try:
            _learner_pages(db.session)
            _admin_home(db.session)
            done += 1
            for params in _stats_views(db.session):
                if clock() - started > budget_s:
                    log.info("statement warm-up stopped after %d views (%.1f s)", done, clock() - started)
                    break
                db.session.expunge_all()  # as a new request: the filters' lookups by key go to the database
                filters = queries.parse_filters(db.session, params)
                page.build_locales(db.session, filters, page.DEFAULT_DIMENSION, ("ko", "en"))
                done += 1
        except Exception as exc:  # noqa: BLE001 - the first request reports the same failure to someone who can act
            log.warning("statement warm-up skipped after %d views: %s", done, exc)
        finally:
            db.session.rollback()
            db.session.remove()
    return done


def own_pool_after_fork(app: Flask) -> None:
    """In a process forked from this one, start ``app``'s database pool afresh (SQLAlchemy's ``dispose(close=False)``:
    the connections this process opened stay its own, untouched by the child)."""
    from academy.extensions import db

    with app.app_context():
        engine = db.engine
    os.register_at_fork(after_in_child=partial(engine.dispose, close=False))
