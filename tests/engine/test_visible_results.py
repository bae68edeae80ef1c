"""Visible test results: what the released part of each autograder test said, known before the deadline.

Real nbgrader and real (sandboxed where this machine can) kernels of the lab environment.
The course has one notebook with answers ``add``, ``mul`` and ``boom`` and tests of every
kind: visible passes but hidden fails, visible fails, no hidden tests (passing and failing),
every test hidden, and a test whose visible part calls ``boom()`` (which a learner can make
crash the kernel or loop forever).  The hidden tests carry the marker ``SECRET`` in their
source and messages: it must never reach a visible result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.support import LAB_PYTHON, skip_or_fail

ASSIGNMENT = "visible"
TIMEOUT = 4  # the course's cell timeout, seconds

HIDDEN_FAILS = ('assert add(1, 2) == 3, "add(1, 2) should be 3"\n### BEGIN HIDDEN TESTS\n'
                'assert add(-1, -1) == -2, "SECRET negative numbers"\n### END HIDDEN TESTS\n')
VISIBLE_FAILS = ('assert mul(3, 3) == 9, "mul(3, 3) should be 9"\n### BEGIN HIDDEN TESTS\n'
                 'assert mul(0, 5) == 0, "SECRET zero"\n### END HIDDEN TESTS\n')
PLAIN_PASSES = "assert add(2, 3) == 5\n"
PLAIN_FAILS = 'assert mul(2, 5) == 10, "mul(2, 5) should be 10"\n'
ALL_HIDDEN = "# the tests of this cell are hidden\n### BEGIN HIDDEN TESTS\nassert add(0, 0) == 0  # SECRET\n" \
             "### END HIDDEN TESTS\n"
CALLS_BOOM = 'boom()\n### BEGIN HIDDEN TESTS\nassert boom() is None, "SECRET boom"\n### END HIDDEN TESTS\n'
AFTER_BOOM = 'assert add(5, 5) == 10, "add(5, 5) should be 10"\n### BEGIN HIDDEN TESTS\n' \
             'assert add(7, 0) == 7, "SECRET later"\n### END HIDDEN TESTS\n'
TESTS = {"test_hidden_fails": HIDDEN_FAILS, "test_visible_fails": VISIBLE_FAILS, "test_plain_passes": PLAIN_PASSES,
         "test_plain_fails": PLAIN_FAILS, "test_all_hidden": ALL_HIDDEN, "test_boom": CALLS_BOOM,
         "test_after_boom": AFTER_BOOM}

# The learner: add is right except for negative sums, mul adds, boom does nothing.
ADD = "def add(a, b):\n    return abs(a + b)\n"
MUL = "def mul(a, b):\n    return a + b\n"
BOOM_QUIET = "def boom():\n    return None\n"


def _meta(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
          points: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
                            "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _answer(name: str, body: str) -> str:
    return f"def {name}(*args):\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION\n"


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The course, its release and a generate_assignment cache (built once)."""
    if not os.access(LAB_PYTHON, os.X_OK):
        skip_or_fail(f"the lab environment {LAB_PYTHON} is missing (make lab-env)")
    from academy.engine.pipeline import release_notebooks

    base = tmp_path_factory.mktemp("visible")
    root = base / "course"
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = "visible"\n'
        f"c.ExecutePreprocessor.timeout = {TIMEOUT}\n")
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [
        new_markdown_cell("# Visible tests"),
        new_code_cell(_answer("add", "return args[0] + args[1]"), metadata=_meta("add_answer", solution=True)),
        new_code_cell(_answer("mul", "return args[0] * args[1]"), metadata=_meta("mul_answer", solution=True)),
        new_code_cell(_answer("boom", "return None"), metadata=_meta("boom_answer", solution=True)),
        new_markdown_cell("YOUR ANSWER HERE", metadata=_meta("explain", grade=True, solution=True, points=1.0)),
    ]
    cells += [new_code_cell(source, metadata=_meta(grade_id, grade=True, locked=True, points=1.0))
              for grade_id, source in TESTS.items()]
    nb.cells = cells
    nbformat.write(nb, source / f"{ASSIGNMENT}.ipynb")
    cache = base / "cache"
    release = release_notebooks(root, ASSIGNMENT, cache_dir=cache)[ASSIGNMENT]
    assert b"SECRET" not in release
    return {"root": root, "cache": cache, "release": release, "base": base}


def _submission(course: dict[str, Any], boom: str = BOOM_QUIET, forged: bool = False) -> bytes:
    """The released notebook with the learner's answers; ``forged`` also claims visible passes in metadata."""
    nb = nbformat.reads(course["release"].decode(), as_version=4)
    answers = {"add_answer": ADD, "mul_answer": MUL, "boom_answer": boom}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
        if forged and grade_id in TESTS:
            cell.metadata["academy"] = {"visible": {"passed": True, "error": None}}
    return nbformat.writes(nb).encode()


def _grade(course: dict[str, Any], tmp_path: Path, **answers: Any) -> tuple[Any, dict[str, Any], Any]:
    """Grade; return the result, its cells by grade_id (JSON) and the autograded notebook."""
    from academy.engine.pipeline import grade_submission

    result = grade_submission(course["root"], ASSIGNMENT, {ASSIGNMENT: _submission(course, **answers)},
                              cache_dir=course["cache"], work_root=tmp_path, keep_workdir=True, feedback=False)
    assert result.sandboxed or os.environ.get("ACADEMY_GRADER_ALLOW_UNSANDBOXED") == "1"
    data = json.loads(json.dumps(result.to_json()))
    cells = {cell["grade_id"]: cell for cell in data["notebooks"][0]["cells"]}
    (executed_path,) = tmp_path.glob(f"academy-grade-*/autograded/learner/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    executed = nbformat.read(executed_path, as_version=4)
    return result, cells, executed


def _executed_cell(executed: Any, grade_id: str) -> Any:
    return next(cell for cell in executed.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _no_secret(cells: dict[str, Any]) -> None:
    for cell in cells.values():
        assert "SECRET" not in str(cell.get("visible_error")), cell


def test_visible_results_of_every_kind_of_test(course: dict[str, Any], tmp_path: Path) -> None:
    """Visible passes / hidden fails, visible fails, no hidden tests, all hidden; scores as nbgrader's."""
    result, cells, executed = _grade(course, tmp_path, forged=True)
    assert result.status.value == "graded", result.problems
    assert result.flags == []  # the extra runs do not confuse the canary or the probe
    assert result.problems == []

    hidden_fails = cells["test_hidden_fails"]
    assert hidden_fails["score"] == 0.0 and "SECRET negative numbers" in hidden_fails["error"]
    assert hidden_fails["visible_passed"] is True and hidden_fails["visible_error"] is None

    visible_fails = cells["test_visible_fails"]
    assert visible_fails["score"] == 0.0
    assert visible_fails["visible_passed"] is False  # the learner's forged metadata was ignored
    assert visible_fails["visible_error"] == "AssertionError: mul(3, 3) should be 9"

    assert cells["test_plain_passes"] == {"grade_id": "test_plain_passes", "score": 1.0, "max_score": 1.0,
                                          "error": None, "visible_passed": True, "visible_error": None}
    plain_fails = cells["test_plain_fails"]
    assert plain_fails["score"] == 0.0 and plain_fails["visible_passed"] is False
    assert plain_fails["visible_error"] == plain_fails["error"] == "AssertionError: mul(2, 5) should be 10"

    all_hidden = cells["test_all_hidden"]  # nothing visible to run: unknown
    assert all_hidden["score"] == 1.0 and all_hidden["visible_passed"] is None and all_hidden["visible_error"] is None

    for grade_id in ("test_boom", "test_after_boom"):
        assert cells[grade_id]["score"] == 1.0 and cells[grade_id]["visible_passed"] is True
    # A manually graded answer has no visible result; the JSON keys are only on tests.
    assert "visible_passed" not in cells["explain"] and "visible_error" not in cells["explain"]
    _no_secret(cells)

    # What the grader left in the executed notebook: only the cells with hidden tests have a record.
    records = {grade_id: _executed_cell(executed, grade_id).metadata.get("academy", {}).get("visible")
               for grade_id in TESTS}
    assert records["test_hidden_fails"] == {"passed": True, "error": None}
    assert records["test_visible_fails"] == {"passed": False, "error": "AssertionError: mul(3, 3) should be 9"}
    assert records["test_all_hidden"] == {"passed": None, "error": None}
    assert records["test_plain_passes"] is None and records["test_plain_fails"] is None
    # The whole cell ran for the score: its outputs are the hidden test's failure.
    assert "SECRET negative numbers" in json.dumps(_executed_cell(executed, "test_hidden_fails").outputs)


def test_visible_part_that_kills_the_kernel(course: dict[str, Any], tmp_path: Path) -> None:
    """The visible part crashes the kernel: the test fails with that message and later cells are not run."""
    result, cells, executed = _grade(course, tmp_path, boom="def boom():\n    import os\n    os._exit(3)\n")
    assert result.status.value == "learner_code_failed"
    boom = cells["test_boom"]
    assert boom["score"] == 0.0 and boom["visible_passed"] is False
    assert boom["visible_error"].startswith("DeadKernelError: the kernel died in visible: cell 'test_boom'")
    assert boom["error"] == boom["visible_error"]
    after = cells["test_after_boom"]  # not run, its visible part neither
    assert after["score"] == 0.0 and after["visible_passed"] is False
    assert after["visible_error"].startswith("NotRun: not run because the kernel died in visible: cell 'test_boom'")
    assert cells["test_hidden_fails"]["visible_passed"] is True  # earlier cells keep their results
    assert any("kernel died in visible: cell 'test_boom'" in problem for problem in result.problems)
    assert "SECRET" not in json.dumps(_executed_cell(executed, "test_boom").outputs)  # the hidden part never ran
    _no_secret(cells)


def test_visible_part_that_times_out(course: dict[str, Any], tmp_path: Path) -> None:
    """The visible part runs out of time: the test fails once (the whole cell is not run again), later cells run."""
    result, cells, executed = _grade(course, tmp_path, boom="def boom():\n    while True:\n        pass\n")
    assert result.status.value == "learner_code_failed"
    boom = cells["test_boom"]
    assert boom["score"] == 0.0 and boom["visible_passed"] is False
    assert boom["visible_error"].startswith("CellTimeoutError")
    assert [p for p in result.problems if "test_boom" in p] == [
        f"timeout: visible: cell 'test_boom' ran longer than {TIMEOUT} s"]
    assert "SECRET" not in json.dumps(_executed_cell(executed, "test_boom").outputs)  # the whole cell did not run
    after = cells["test_after_boom"]  # the interrupt worked: the kernel lives on
    assert after["score"] == 1.0 and after["visible_passed"] is True
    _no_secret(cells)


def test_visible_result_json_is_additive() -> None:
    """Tests get both keys, other cells none; every other key is as before."""
    from academy.engine.results import CellResult

    assert CellResult("t", 1.0, 2.0, "AssertionError", test=True, visible_passed=False,
                      visible_error="AssertionError").to_json() == {
        "grade_id": "t", "score": 1.0, "max_score": 2.0, "error": "AssertionError",
        "visible_passed": False, "visible_error": "AssertionError"}
    assert CellResult("essay", None, 3.0, needs_manual_grading=True).to_json() == {
        "grade_id": "essay", "score": None, "max_score": 3.0, "error": None, "needs_manual_grading": True}


def test_hidden_blocks_use_the_courses_delimiters() -> None:
    """The visible part is what nbgrader's ClearHiddenTests, configured as the course says, leaves."""
    from nbformat.v4 import new_code_cell as cell
    from traitlets.config import Config

    from academy.engine.execute import GuardedExecute

    config = Config()
    config.ClearHiddenTests.begin_test_delimeter = "BEGIN SECRET"
    config.ClearHiddenTests.end_test_delimeter = "END SECRET"
    execute = GuardedExecute(config=config)
    test = cell("assert f(1) == 1\n# BEGIN SECRET\nassert f(2) == 2\n# END SECRET\nassert f(3) == 3\n",
                metadata=_meta("t", grade=True, locked=True, points=1.0))
    assert execute.visible_source(test) == "assert f(1) == 1\nassert f(3) == 3\n"
    test.source = HIDDEN_FAILS  # the default delimiters mean nothing to this course
    assert execute.visible_source(test) is None
    answer = cell("# BEGIN SECRET\nx = 1\n# END SECRET\n", metadata=_meta("a", solution=True))
    assert execute.visible_source(answer) is None  # only autograder tests


def test_a_test_that_ran_hidden_code_without_a_record_reports_nothing() -> None:
    """Safety net: never the whole cell's result (it may quote hidden tests) as the visible one."""
    from nbformat.v4 import new_code_cell as cell
    from nbformat.v4 import new_output

    from academy.engine.scores import _visible_result

    failed = cell(HIDDEN_FAILS, outputs=[new_output("error", ename="AssertionError", evalue="SECRET negative numbers",
                                                    traceback=[])])
    released = HIDDEN_FAILS.split("### BEGIN")[0]
    assert _visible_result(failed, released, 0.0, 1.0) == (None, None)
    failed.metadata["academy"] = {"visible": {"passed": True, "error": None}}
    assert _visible_result(failed, released, 0.0, 1.0) == (True, None)
    failed.metadata["academy"] = {"visible": "garbage"}
    assert _visible_result(failed, released, 0.0, 1.0) == (None, None)
    plain = cell(PLAIN_FAILS, outputs=[new_output("error", ename="AssertionError", evalue="mul(2, 5) should be 10",
                                                  traceback=[])])
    assert _visible_result(plain, PLAIN_FAILS, 0.0, 1.0) == (False, "AssertionError: mul(2, 5) should be 10")
    assert _visible_result(None, PLAIN_FAILS, 0.0, 1.0) == (None, None)
