"""What test modules share that is not a fixture: the project's paths, the "services required" switch and a
recorder of the SQL an app runs.

``make test`` (and CI) sets ``ACADEMY_TEST_REQUIRE_SERVICES=1``.  A test that needs something
the machine may lack (PostgreSQL, Redis, root, cgroups, bubblewrap, the lab environment,
Chromium, the hub's proxy) calls :func:`skip_or_fail` when it is missing: a skip with the
reason on a developer's machine, a failure under the switch, so CI cannot pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from flask import Flask

#: The project root (the checkout), whatever folder of ``tests/`` a module lives in.
ROOT = Path(__file__).resolve().parent.parent
#: The sample courses that ship with the project.
COURSES = ROOT / "courses"
#: The learners' kernel interpreter (``make lab-env``), or ``ACADEMY_LAB_PYTHON``.
LAB_PYTHON = Path(os.environ.get("ACADEMY_LAB_PYTHON") or ROOT / ".venv-lab" / "bin" / "python")

#: True when every service and privilege a test needs must be there (``make test`` sets it).
REQUIRE_SERVICES = os.environ.get("ACADEMY_TEST_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip because ``reason`` (something the test needs is missing), or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (ACADEMY_TEST_REQUIRE_SERVICES=1: make test needs it)")
    pytest.skip(reason)


@contextlib.contextmanager
def sql_run(app: Flask, *, compiled_only: bool = False) -> Iterator[list[str]]:
    """Every SQL statement ``app``'s engine runs inside the block, in order; with ``compiled_only``, only those
    SQLAlchemy had to compile (not found in its cache of compiled statements)."""
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import CacheStats

    from academy.extensions import db

    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool) -> None:
        if not compiled_only or (context is not None and context.cache_hit is CacheStats.CACHE_MISS):
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
