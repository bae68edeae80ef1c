"""The anti-cheat tests' course (``test_anticheat*.py``): one nbgrader assignment, learners' notebooks, grading.

``make_course`` builds a small course once per module (the ``course`` fixture of
``tests/engine/conftest.py``): a read-only helper cell, two answers (``mean``, ``spread``)
and three tests, one with hidden tests and one that uses ``academy/engine/checks.py``
copied into the source folder as ``academy_checks.py``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.support import LAB_PYTHON, ROOT, skip_or_fail

ASSIGNMENT = "stats"

SETUP = "import math\nDATA = [1.0, 2.0, 3.0, 4.0]\n\ndef approx(a, b):\n    return abs(a - b) < 1e-9\n"
MEAN = "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION\n"
TEST_MEAN = "assert mean([1, 2, 3]) == 2.0\nassert approx(mean(DATA), 2.5)\n"
SPREAD = "def spread(xs):\n    ### BEGIN SOLUTION\n    return max(xs) - min(xs)\n    ### END SOLUTION\n"
TEST_SPREAD = ("assert spread([1, 5, 3]) == 4\n### BEGIN HIDDEN TESTS\nassert round(spread([0.5, 2.0]), 2) == 1.5\n"
               "assert isinstance(spread([1, 2]), (int, float))\n### END HIDDEN TESTS\n")
TEST_STRICT = "from academy_checks import check_close\ncheck_close(mean([2.0, 4.0]), 3.0)\n"
POINTS = {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 1.0}

CANARY = re.compile(r'assert False, "[0-9a-f]{24}"')  # what the grader puts before a test for its canary
WRONG_SPREAD = "def spread(xs):\n    return 4\n"
HONEST_SPREAD = "def spread(xs):\n    return max(xs) - min(xs)\n"


def nbgrader_meta(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
          points: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
                            "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def build_course(root: Path) -> Path:
    """An nbgrader course: source/stats/stats.ipynb plus the strict helpers as academy_checks.py."""
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = "anticheat"\n')
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        new_markdown_cell("# Statistics\nImplement `mean` and `spread`."),
        new_code_cell(SETUP, metadata=nbgrader_meta("setup", locked=True)),
        new_code_cell(MEAN, metadata=nbgrader_meta("mean_answer", solution=True)),
        new_code_cell(TEST_MEAN, metadata=nbgrader_meta("test_mean", grade=True, points=POINTS["test_mean"])),
        new_code_cell(SPREAD, metadata=nbgrader_meta("spread_answer", solution=True)),
        new_code_cell(TEST_SPREAD, metadata=nbgrader_meta("test_spread", grade=True, points=POINTS["test_spread"])),
        new_code_cell(TEST_STRICT, metadata=nbgrader_meta("test_strict", grade=True, points=POINTS["test_strict"])),
    ]
    nbformat.write(nb, source / f"{ASSIGNMENT}.ipynb")
    shutil.copy(ROOT / "academy" / "engine" / "checks.py", source / "academy_checks.py")
    return root


def learner_notebook(course: dict[str, Any], mean: str, spread: str = HONEST_SPREAD) -> bytes:
    """The released notebook with the learner's answers in the two answer cells."""
    nb = nbformat.reads(course["release"].decode(), as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "mean_answer":
            cell.source = mean
        elif grade_id == "spread_answer":
            cell.source = spread
    return nbformat.writes(nb).encode()


def grade(course: dict[str, Any], mean: str, spread: str = HONEST_SPREAD, **kwargs: Any) -> Any:
    from academy.engine.pipeline import grade_submission

    work = course["base"] / "work"
    return grade_submission(course["root"], ASSIGNMENT, {ASSIGNMENT: learner_notebook(course, mean, spread)},
                            cache_dir=course["cache"], work_root=work, **kwargs)


def scores(result: Any) -> dict[str, float | None]:
    return {cell.grade_id: cell.score for nb in result.notebooks for cell in nb.cells}


def assert_graded(result: Any) -> None:
    assert result.status.value == "graded", (result.problems, result.log[-20:])
    assert result.sandboxed or os.environ.get("ACADEMY_GRADER_ALLOW_UNSANDBOXED") == "1"


def flagged(result: Any, *needles: str) -> None:
    text = "\n".join(result.flags)
    for needle in needles:
        assert needle in text, result.flags
    assert result.to_json()["flags"] == result.flags


def make_course(base: Path) -> dict[str, Any]:
    """The course, its release and a generate_assignment cache shared by every case."""
    if not os.access(LAB_PYTHON, os.X_OK):
        skip_or_fail(f"the lab environment {LAB_PYTHON} is missing (make lab-env)")
    from academy.engine.pipeline import release_notebooks

    root = build_course(base / "course")
    cache = base / "cache"
    release = release_notebooks(root, ASSIGNMENT, cache_dir=cache)[ASSIGNMENT]
    assert b"HIDDEN" not in release and b"sum(xs)" not in release  # the release hides the key
    return {"root": root, "cache": cache, "release": release, "base": base}
