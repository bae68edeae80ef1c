"""Shared fixtures: the app on SQLite and on PostgreSQL, users, tracks and cohorts.

Every test that uses ``app`` runs twice, once per database.  PostgreSQL tests use a
throwaway database created for this run on 127.0.0.1:5432 and dropped at the end;
when no server answers they skip with the reason, unless ACADEMY_TEST_REQUIRE_SERVICES
is set (``make test`` sets it), in which case they fail, so CI cannot pass by skipping
(``tests.support.skip_or_fail``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

# Importing academy first defers rfc3987_syntax (academy/deferred_imports.py), whose grammars cost each test process
# 3 s of its collection when a test module (tests/api) imports jsonschema before anything of academy.
import academy  # noqa: F401
from tests.support import ROOT, skip_or_fail

# The kernel zygote's preload (academy.engine.sandbox.policy.DEFAULT_ZYGOTE_PRELOAD) pays off in a grading worker
# that lives for days; most test modules start a zygote of their own for a few tiny notebooks, so the suite
# preloads NumPy only.  tests/curriculum grades the shipped notebooks with the default, as production does.
os.environ.setdefault("ACADEMY_GRADER_ZYGOTE_PRELOAD", "numpy")
# One grading cache for the whole run (its entries are named by content): a fresh `academy init` of the shipped
# catalogue generated 27 releases with nbgrader, 12 CPU-seconds, in each of the suite's hub stacks, demos and
# browser tests; the first builds them for all (ACADEMY_GRADING_CACHE_DIR, academy.engine.course.portal_cache_dir).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
for _old in Path(tempfile.gettempdir()).glob("academy-test-cache-*"):  # earlier runs' (a few MB each)
    with contextlib.suppress(OSError):
        if _old.stat().st_mtime < time.time() - 6 * 3600:
            shutil.rmtree(_old, ignore_errors=True)
os.environ.setdefault("ACADEMY_GRADING_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"academy-test-cache-{_RUN}"))

PG_ADMIN_URL = os.environ.get("ACADEMY_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct-horse-42"


def _share_werkzeug_url_builders() -> None:
    """Compile each URL rule's builder functions once per test process instead of once per app.

    Most tests build an app of their own, and Werkzeug compiles two builder functions for each of the portal's
    112 rules from a syntax tree: 90 % of ``create_app``, 60-80 ms a test.  The function depends only on the
    rule's parsed form and defaults (the rule itself is passed in when it is called), so rules equal in those
    share one; Werkzeug's own tests of a rule still use the function it compiled.
    """
    from werkzeug.routing.rules import Rule

    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None or getattr(compile_builder, "shared", False):
        return
    built: dict[Any, Any] = {}

    def shared(self: Rule, append_unknown: bool = True) -> Any:
        key = (self.rule, tuple(self._trace), repr(sorted((self.defaults or {}).items())), append_unknown)
        if key not in built:
            built[key] = compile_builder(self, append_unknown)
        return built[key]

    shared.shared = True  # type: ignore[attr-defined]
    Rule._compile_builder = shared  # type: ignore[method-assign]


_share_werkzeug_url_builders()


def _share_jinja_bytecode() -> None:
    """Compile each template once per test process instead of once per app.

    Every app has a Jinja environment of its own, and a test's first page of each kind parsed and compiled its
    templates again: about a tenth of the CPU of the suite's page tests.  Jinja's bytecode cache keeps the
    compiled code by template name and file and checks it against the source's checksum, so an edited template
    is compiled anew;
    every app of the suite is made by the same ``create_app``, with the same Jinja settings.
    """
    from jinja2 import BytecodeCache

    class InMemory(BytecodeCache):
        def __init__(self) -> None:
            self.compiled: dict[str, bytes] = {}

        def load_bytecode(self, bucket: Any) -> None:
            if bucket.key in self.compiled:
                bucket.bytecode_from_string(self.compiled[bucket.key])

        def dump_bytecode(self, bucket: Any) -> None:
            self.compiled[bucket.key] = bucket.bytecode_to_string()

    create = Flask.create_jinja_environment
    if getattr(create, "shared", False):
        return
    cache = InMemory()

    def shared(self: Flask) -> Any:
        environment = create(self)
        environment.bytecode_cache = cache
        return environment

    shared.shared = True  # type: ignore[attr-defined]
    Flask.create_jinja_environment = shared  # type: ignore[method-assign]


_share_jinja_bytecode()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2id with minimal cost parameters: the same code path, a fraction of the time."""
    from argon2 import PasswordHasher

    from academy.users import passwords

    original = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    passwords.dummy_hash.cache_clear()
    yield
    passwords._hasher = original
    passwords.dummy_hash.cache_clear()


@pytest.fixture(scope="module", autouse=True)
def no_kernel_zygote_across_modules() -> Iterator[None]:
    """Grading tests leave this process a kernel zygote (sandbox/zygote.py); the next module starts without one."""
    yield
    from academy.engine.sandbox import zygote

    zygote.close_all()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test run; yields its SQLAlchemy URL."""
    with _throwaway_pg_database("academy_test") as url:
        yield url


@contextlib.contextmanager
def _throwaway_pg_database(prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable server"
        skip_or_fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {type(exc).__name__}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ), {"n": name})
        # DROP DATABASE waits for a checkpoint, which under the suite's writes took a minute: dropped beside
        # the next tests, and waited for when this test process ends (pytest_sessionfinish).
        dropping = threading.Thread(target=_drop_database, args=(admin, name), name=f"drop {name}")
        dropping.start()
        _DROPPING.append(dropping)


_DROPPING: list[threading.Thread] = []


def _drop_database(admin: Any, name: str) -> None:
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for dropping in _DROPPING:
        dropping.join()


@pytest.fixture
def empty_database_url(db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, of the current backend (for migration tests)."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    with _throwaway_pg_database("academy_empty") as url:
        yield url


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """An empty PostgreSQL database of its own (for tests of the scale path)."""
    with _throwaway_pg_database("academy_empty") as url:
        yield url


@pytest.fixture(scope="session")
def pg_schema_ready(pg_database: str) -> str:
    """The throwaway database with the current schema created once."""
    from academy import create_app
    from academy.extensions import db

    app = create_app(_config(pg_database, ROOT / "instance-test-unused"))
    with app.app_context():
        import academy.models  # noqa: F401

        db.create_all()
        db.engine.dispose()
    return pg_database


def _config(database_url: str, data_dir: Path, **extra: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "secret_key": "test-secret-key-" + "x" * 32,
        "database_url": database_url,
        "data_dir": data_dir,
        "courses_dir": ROOT / "courses",
        "SERVER_NAME": "academy.test",
        "RATELIMIT_ENABLED": True,
    }
    config.update(extra)
    return config


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Which database this test runs against."""
    return request.param


@pytest.fixture
def app_config(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Configuration for ``app``; a test may extend it via ``@pytest.mark.app_config``."""
    if db_backend == "postgresql":
        url = request.getfixturevalue("pg_schema_ready")
    else:
        url = f"sqlite:///{tmp_path / 'academy.sqlite3'}"
    config = _config(url, tmp_path / "data")
    marker = request.node.get_closest_marker("app_config")
    if marker:
        config.update(marker.kwargs)
    return config


@pytest.fixture
def app(app_config: dict[str, Any], db_backend: str) -> Iterator[Flask]:
    """The portal with an empty schema on the chosen database."""
    from academy import create_app
    from academy.extensions import db

    if db_backend == "sqlite":
        _copy_sqlite_schema(app_config["database_url"])
    application = create_app(app_config)
    with application.app_context():
        import academy.models  # noqa: F401

        if db_backend == "sqlite":
            db.create_all()  # the copied schema is complete: this only checks, unless a test added a table
    try:
        yield application
    finally:
        with application.app_context():
            db.session.remove()
            if db_backend == "postgresql":
                empty_pg_tables(db.engine, db.metadata)
            db.engine.dispose()


_SQLITE_SCHEMA: dict[frozenset[str], Path] = {}


def _copy_sqlite_schema(database_url: str) -> None:
    """Start a test's SQLite database as a copy of one with the schema already created.

    ``create_all`` on an empty file took 70 ms a test; the copy, made once per test process, a millisecond.
    """
    import atexit
    import shutil
    import tempfile

    import academy.models  # noqa: F401
    from academy.extensions import db

    key = frozenset(db.metadata.tables)
    template = _SQLITE_SCHEMA.get(key)
    if template is None:
        folder = tempfile.mkdtemp(prefix="academy-schema-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # one per test process; left in /tmp before
        template = Path(folder) / "schema.sqlite3"
        engine = create_engine(f"sqlite:///{template}")
        db.metadata.create_all(engine)
        engine.dispose()
        _SQLITE_SCHEMA[key] = template
    shutil.copyfile(template, database_url.removeprefix("sqlite:///"))


def empty_pg_tables(engine: Any, metadata: Any) -> None:
    """Delete every row and restart the sequences that moved, as a fresh database would number them.

    Not TRUNCATE: it gives each of the schema's tables new files, 0.3-0.6 s a test here (a minute and more of
    the suite's PostgreSQL half); deleting the few rows a test leaves takes a few milliseconds.  Children
    first (the metadata's dependency order, reversed); TRUNCATE ... CASCADE stays as the fallback should a
    foreign-key cycle make that order fail.
    """
    deletes = "; ".join(f'DELETE FROM "{table.name}"' for table in reversed(metadata.sorted_tables))
    restart = ("SELECT setval(format('%%I.%%I', schemaname, sequencename)::regclass, 1, false) "
               "FROM pg_sequences WHERE last_value IS NOT NULL")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(deletes)
            conn.exec_driver_sql(restart)
    except Exception:  # noqa: BLE001 - a cycle the order cannot satisfy: the slow, certain way
        tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (CSRF tokens must be sent, as a browser would)."""
    return app.test_client()


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    """An application context for calling services directly."""
    with app.app_context():
        yield


@pytest.fixture
def make_user(app: Flask) -> Any:
    """Factory: ``make_user(role="learner", email=None, password=PASSWORD, **fields)`` → user id."""
    from academy.extensions import db
    from academy.users.models import Role
    from academy.users.services import create_user

    counter = {"n": 0}

    def factory(role: str = "learner", email: str | None = None, password: str = PASSWORD, **fields: Any) -> int:
        from academy.db import utcnow

        fields.setdefault("consent_at", utcnow())  # as after registration; pass None for an imported account
        counter["n"] += 1
        email = email or f"{role}{counter['n']}@example.kr"
        with app.app_context():
            user = create_user(db.session, email, password, Role(role), name=fields.pop("name", None))
            for key, value in fields.items():
                setattr(user, key, value)
            db.session.commit()
            return user.id

    return factory


@pytest.fixture
def make_track(app: Flask) -> Any:
    """Factory: a track with one course and one assignment; returns the track id."""
    from academy.catalog.models import Assignment, Course, CourseInstructor, Track
    from academy.extensions import db

    counter = {"n": 0}

    def factory(slug: str | None = None, instructors: tuple[str, ...] = ()) -> int:
        counter["n"] += 1
        slug = slug or f"track-{counter['n']}"
        with app.app_context():
            track = Track(slug=slug, title_ko=f"트랙 {slug}", title_en=f"Track {slug}", position=counter["n"])
            course = Course(slug=f"{slug}-course", track=track, title_ko="과정", title_en="Course",
                            source_path=f"/nonexistent/{slug}", hours=4.0)
            course.instructors = [CourseInstructor(email=e) for e in instructors]
            db.session.add_all([track, course])
            db.session.add(Assignment(course=course, slug="01-intro", title_ko="첫 과제", title_en="First task",
                                      due_days=7, max_score=10.0, notebooks=["intro.ipynb"]))
            db.session.commit()
            return track.id

    return factory


@pytest.fixture
def make_cohort(app: Flask, make_track: Any) -> Any:
    """Factory: ``make_cohort(capacity=2, requires_approval=False, track_id=None)`` → cohort id."""
    from academy.catalog.models import Track
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort
    from academy.extensions import db

    counter = {"n": 0}

    def factory(capacity: int = 2, requires_approval: bool = False, track_id: int | None = None,
                starts_in_days: int = 0, **kwargs: Any) -> int:
        counter["n"] += 1
        track_id = track_id or make_track()
        with app.app_context():
            track = db.session.get(Track, track_id)
            start = utcnow() + dt.timedelta(days=starts_in_days)
            cohort = create_cohort(db.session, track, name=f"cohort {counter['n']}", starts_at=start,
                                   ends_at=start + dt.timedelta(days=30), capacity=capacity,
                                   requires_approval=requires_approval, actor=None, **kwargs)
            db.session.commit()
            return cohort.id

    return factory


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """Fetch a page and return the CSRF token its form carries."""
    import re

    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'id="csrf_token"[^>]*value="([^"]+)"', html
    )
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    """Sign in through the real form; returns the response."""
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def login_as(client: FlaskClient, make_user: Any, app: Flask) -> Any:
    """Factory: create a user with ``role`` and sign the test client in; returns the user id."""

    def factory(role: str = "learner", **fields: Any) -> int:
        from academy.extensions import db
        from academy.users.models import User

        user_id = make_user(role, **fields)
        with app.app_context():
            email = db.session.get(User, user_id).email
        response = login(client, email)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return user_id

    return factory


@pytest.fixture
def sent_jobs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Job messages that reached the broker, in order: ``academy.jobs._send`` records instead of sending."""
    messages: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr("academy.jobs._send", lambda task, args: messages.append((task, args)))
    return messages


#: Test files that take a minute or more (``make test`` prints the slowest tests), longest first.  ``make test``
#: runs files in this order (``--no-loadscope-reorder``), the rest after them: a long file started last would
#: keep its process busy after the others had finished.  Update it when a file grows or shrinks.
SLOW_FILES = (
    "tests/web/test_browser.py", "tests/grading/test_queue.py", "tests/engine/test_nbgrader_compat.py",
    "tests/curriculum/test_ai_advanced.py", "tests/engine/test_pipeline.py", "tests/labs/test_authoring.py",
    "tests/web/test_browser_journey.py", "tests/grading/test_publish_flow.py", "tests/labs/test_culling.py",
    "tests/curriculum/test_applied_ml.py", "tests/labs/test_integration.py", "tests/curriculum/test_data_analytics.py",
    "tests/labs/test_demo_stop.py", "tests/web/test_browser_staff.py", "tests/catalog/test_init_checks.py",
    "tests/web/test_accessibility.py", "tests/grading/test_publish_checks.py", "tests/curriculum/test_ai_basics.py",
    "tests/labs/test_lab_portal_link.py", "tests/engine/test_anticheat.py", "tests/test_cli.py",
    "tests/labs/test_gpu_track_bench.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(SLOW_FILES)}
    # sorted() is stable: tests keep their order within a file, and the other files theirs.
    items[:] = sorted(items, key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
