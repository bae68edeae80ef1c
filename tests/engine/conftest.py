"""Fixtures of the engine's tests: a sandbox policy that works here, a learner's folder, the anti-cheat course."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from academy.engine.sandbox import SandboxPolicy, probe_isolation
from tests.engine.anticheat_course import make_course
from tests.support import skip_or_fail


@pytest.fixture(scope="module")
def base_policy() -> SandboxPolicy:
    policy = SandboxPolicy(cell_timeout=20.0, notebook_timeout=120.0, allow_unsandboxed=False)
    if not policy.bwrap:
        skip_or_fail("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap")
    if not os.access(policy.python, os.X_OK):
        skip_or_fail(f"the lab interpreter {policy.python} is missing (make builds .venv-lab)")
    report = probe_isolation(policy, refresh=True)
    if not report.sandbox_available:
        skip_or_fail("the sandbox cannot be built here: " + "; ".join(report.notes))
    return policy


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("hello from the submission\n")
    return work


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The anti-cheat course (``anticheat_course.py``), built once per module."""
    return make_course(tmp_path_factory.mktemp("anticheat"))
