"""Reading a graded job back: per-cell scores from nbgrader's gradebook, error lines from the notebooks.

Per cell: nbgrader's autograde score for autograder tests.  Manually graded answers and
tasks are listed with ``"score": null, "needs_manual_grading": true`` until a human
grades them, unless nbgrader already scored them (an unchanged answer gets 0).  Cells
come in the order of the released notebook; a failed test carries its error line.

Visible results
    Every autograder test also carries ``visible_passed``/``visible_error``: the result of
    the part of the test the learner can see (the released cell).  For a test with hidden
    tests ``GuardedExecute`` ran that part on its own and left the outcome in the executed
    cell's metadata (``academy.visible``, see ``academy.engine.execute``); for a test
    without hidden tests it is the cell's own result (passed iff full points, its error
    line otherwise).  Never the full cell's error for a test with hidden tests: that line
    may quote the hidden tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook
from nbgrader.utils import is_grade, is_solution

from academy.engine.course import NbgraderCourse, job_config
from academy.engine.execute import visible_record
from academy.engine.joblog import JobLog
from academy.engine.results import (
    CellResult,
    GradeResult,
    GraderSetupError,
    GradeStatus,
    NotebookResult,
    error_line,
)


def read_results(course: NbgraderCourse, job: Path, assignment: str, student: str, releases: dict[str, Any],
                  feedback: bool, joblog: JobLog) -> GradeResult:
    """Per-cell scores from the job's gradebook, error lines from the autograded notebooks."""
    started = time.monotonic()
    autograded_dir = job / "autograded" / student / assignment
    course_id = job_config(course, job, assignment, student).CourseDirectory.get("course_id", "")
    notebooks: list[NotebookResult] = []
    truncated: list[str] = []
    executed_text: dict[str, str] = {}
    with Gradebook(f"sqlite:///{job / 'gradebook.db'}", course_id) as gradebook:
        submission = gradebook.find_submission(assignment, student)
        by_name = {nb.name: nb for nb in submission.notebooks}
        for name in course.notebook_names:
            if name not in by_name:
                raise GraderSetupError(f"the gradebook has no notebook {name!r}")
            path = autograded_dir / f"{name}.ipynb"
            text = path.read_text(encoding="utf-8") if path.is_file() else None
            executed = nbformat.reads(text, as_version=4) if text is not None else None
            notebooks.append(_notebook_result(name, by_name[name].grades, releases[name], executed))
            if executed is not None:
                truncated.extend(_truncated_cells(name, executed))
                executed_text[name] = text
    result = GradeResult(GradeStatus.graded, notebooks=notebooks, problems=truncated, executed=executed_text)
    if feedback:
        for name in course.notebook_names:
            html = job / "feedback" / student / assignment / f"{name}.html"
            if html.is_file():
                result.feedback[name] = html.read_text(encoding="utf-8")
    joblog.timings["read_results"] = round(time.monotonic() - started, 3)
    return result


def _notebook_result(name: str, grades: Sequence[Any], release: Any, executed: Any) -> NotebookResult:
    order = [cell.metadata.nbgrader["grade_id"] for cell in release.cells
             if "nbgrader" in cell.metadata and cell.metadata.nbgrader.get("grade_id")]
    position = {grade_id: index for index, grade_id in enumerate(order)}
    tests = {cell.metadata.nbgrader["grade_id"]: cell.source for cell in release.cells
             if is_grade(cell) and not is_solution(cell) and cell.cell_type == "code"}
    executed_cells: dict[str, Any] = {}
    for cell in executed.cells if executed is not None else []:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id:
            executed_cells[grade_id] = cell
    cells = []
    for grade in sorted(grades, key=lambda g: (position.get(g.name, len(position)), g.name)):
        max_score = float(grade.max_score or 0.0)
        if grade.needs_manual_grade or grade.auto_score is None:
            manual = grade.manual_score
            cells.append(CellResult(grade.name, None if manual is None else float(manual), max_score,
                                    needs_manual_grading=manual is None, test=grade.name in tests))
            continue
        score = float(grade.manual_score if grade.manual_score is not None else grade.auto_score)
        error = None
        if grade.name in tests and score < max_score and grade.name in executed_cells:
            error = _error_text(executed_cells[grade.name])
        cell = CellResult(grade.name, score, max_score, error, test=grade.name in tests)
        if cell.test:
            cell.visible_passed, cell.visible_error = _visible_result(executed_cells.get(grade.name),
                                                                      tests[grade.name], float(grade.auto_score),
                                                                      max_score)
        cells.append(cell)
    return NotebookResult(name, cells)


def _visible_result(executed: Any, released: str, auto_score: float,
                    max_score: float) -> tuple[bool | None, str | None]:
    """``(visible_passed, visible_error)`` of an autograder test (see the module docstring).

    ``released`` is the test's source in the released notebook, ``auto_score`` nbgrader's own
    score of the executed cell (an instructor's manual override says nothing about what ran).
    Unknown (None) when the cell never ran, or when it ran other code than the learner saw
    (hidden tests) and no visible result was recorded.
    """
    if executed is None:
        return None, None
    record = visible_record(executed)
    if record is not None:
        return record
    if executed.source.strip() != released.strip():
        return None, None
    passed = auto_score >= max_score
    return passed, None if passed else _error_text(executed)


def _truncated_cells(name: str, executed: Any) -> list[str]:
    """Problems for cells whose output nbgrader's LimitOutput cut (same wording as GuardedExecute's)."""
    found = []
    for index, cell in enumerate(executed.cells):
        if any(out.get("output_type") == "stream" and "... Output truncated ..." in out.get("text", "")
               for out in cell.get("outputs", [])):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            found.append(f"output truncated: {name}: cell {grade_id!r}" if grade_id
                         else f"output truncated: {name}: cell {index + 1}")
    return found


def _error_text(cell: Any) -> str | None:
    """The line that explains a failed test: the last error (``Name: value``) or the stderr text."""
    return error_line(cell.get("outputs", []))
