"""The checks a new source version passes before release: valid, solution full marks, learner version zero, changes.

The grading cases run the real engine (nbgrader and kernels) on the shipped pandas assignment.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from academy.teaching.publish import check_version, compare, marker_problems
from tests.support import ROOT

COURSE = ROOT / "courses" / "python-data"
SLUG = "01-pandas-basics"
NAME = "production_log.ipynb"
SOURCE = json.loads((COURSE / "source" / SLUG / NAME).read_bytes())

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cell(notebook: dict[str, Any], grade_id: str) -> dict[str, Any]:
    return next(c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _check(tmp_path: Path, notebook: dict[str, Any] | bytes, grader_cache: Path) -> Any:
    data = notebook if isinstance(notebook, bytes) else json.dumps(notebook).encode()
    return check_version(COURSE, SLUG, {NAME: data}, tmp_path / "check", current_source=COURSE / "source" / SLUG,
                         cache_dir=grader_cache)


def test_the_shipped_version_passes_and_changes_nothing(tmp_path: Path, grader_cache: Path) -> None:
    check = _check(tmp_path, SOURCE, grader_cache)
    assert check.ok, check.problems
    assert check.changes == [] and check.points == 12.0


def test_a_solution_that_fails_a_test_is_refused_naming_the_cell(tmp_path: Path, grader_cache: Path) -> None:
    broken = copy.deepcopy(SOURCE)
    cell = _cell(broken, "add_defect_rate")
    cell["source"] = "def add_defect_rate(df):\n    ### BEGIN SOLUTION\n    return df\n    ### END SOLUTION\n"
    check = _check(tmp_path, broken, grader_cache)
    assert not check.ok
    found = {(p.notebook, p.cell, p.code) for p in check.problems}
    # find_bad_days uses add_defect_rate: its test fails too
    assert (NAME, "test_add_defect_rate", "solution_not_full") in found
    assert {code for _nb, _cell, code in found} == {"solution_not_full"} and "test_summarize_by_line" not in str(found)


def test_a_test_the_blank_learner_version_passes_is_refused(tmp_path: Path, grader_cache: Path) -> None:
    lenient = copy.deepcopy(SOURCE)
    _cell(lenient, "test_find_bad_days")["source"] = "assert True\n"
    check = _check(tmp_path, lenient, grader_cache)
    assert [(p.cell, p.code) for p in check.problems] == [("test_find_bad_days", "learner_not_zero")]


@pytest.mark.parametrize("spoil, code, cell", [
    (lambda nb: _cell(nb, "test_find_bad_days")["metadata"]["nbgrader"].update(grade_id="test_add_defect_rate"),
     "invalid", None),
    (lambda nb: _cell(nb, "test_find_bad_days")["metadata"]["nbgrader"].pop("points"), "invalid", None),
    (lambda nb: _cell(nb, "add_defect_rate").update(source="def add_defect_rate(df):\n    ### BEGIN SOLUTION\n"
                                                           "    return df\n"), "markers", "add_defect_rate"),
    (lambda nb: _cell(nb, "find_bad_days").update(source="### END SOLUTION\n"), "markers", "find_bad_days"),
])
def test_broken_sources_are_refused_before_anything_runs(tmp_path: Path, spoil: Any, code: str,
                                                         cell: str | None) -> None:
    notebook = copy.deepcopy(SOURCE)
    spoil(notebook)

    def never(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("graded a broken source")

    check = check_version(COURSE, SLUG, {NAME: json.dumps(notebook).encode()}, tmp_path / "check",
                          current_source=COURSE / "source" / SLUG, grade=never)
    assert [(p.notebook, p.code, p.cell) for p in check.problems] == [(NAME, code, cell)]
    if code == "invalid":
        assert "production_log" in check.problems[0].detail


def test_not_a_notebook_is_refused(tmp_path: Path) -> None:
    check = check_version(COURSE, SLUG, {NAME: b"\x89PNG not json"}, tmp_path / "check", current_source=None,
                          grade=lambda *a, **k: pytest.fail("graded"))
    assert [(p.code, p.cell) for p in check.problems] == [("invalid", None)]


def test_marker_problems_accept_balanced_cells() -> None:
    assert marker_problems(NAME, SOURCE) == []


def test_the_changes_against_the_current_release() -> None:
    new = copy.deepcopy(SOURCE)
    _cell(new, "test_add_defect_rate")["metadata"]["nbgrader"]["points"] = 3
    hidden = _cell(new, "test_summarize_by_line")
    hidden["source"] = hidden["source"] if isinstance(hidden["source"], str) else "".join(hidden["source"])
    hidden["source"] += "\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS\n"
    test = _cell(new, "test_find_bad_days")
    test["source"] = "".join(test["source"]) + "\nassert 1 == 1\n"
    new["cells"] = [c for c in new["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") != "priority_answer"]
    changes = {(c.cell, c.code, c.before, c.after) for c in compare({NAME: SOURCE}, {NAME: new})}
    assert changes == {("test_add_defect_rate", "points", 2.0, 3.0), ("test_summarize_by_line", "hidden_tests", None,
                                                                     None),
                       ("test_find_bad_days", "tests", None, None), ("priority_answer", "removed", 3.0, None)}
