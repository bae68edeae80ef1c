"""Checks a new version of an assignment's source must pass before it is released to learners.

``check_version`` takes the source notebooks an instructor wants to publish (from the authoring
lab or an upload) and, before anything is released:

1. validates them as an upload is validated (a notebook, nbformat 4, grade ids present and unique,
   points on every graded cell) and checks that every ``BEGIN SOLUTION`` / ``BEGIN HIDDEN TESTS``
   marker is closed by its ``END`` in the same cell, and no ``END`` comes without its ``BEGIN``;
2. builds the learner version with nbgrader (``generate_assignment``) in a staging directory;
3. grades the instructor's version (solutions in) in the sandbox: every autograded cell must get
   full marks;
4. grades the generated learner version: every autograded cell must get zero, and the grader must
   not fail on it;
5. compares the cells with the current release: added, removed, points changed, tests changed,
   hidden tests changed.

Each failure is a :class:`Problem` naming the notebook and the cell; nothing is released here.
Runs notebooks, so it belongs in a job or a command, not a request.  No Flask request.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from academy.catalog.manifest import ManifestError, source_notebook_points

_MARKERS = {"SOLUTION": re.compile(r"^\s*###\s*(BEGIN|END)\s+SOLUTION\b", re.M),
            "HIDDEN TESTS": re.compile(r"^\s*###\s*(BEGIN|END)\s+HIDDEN\s+TESTS\b", re.M)}
_HIDDEN = re.compile(r"###\s*BEGIN\s+HIDDEN\s+TESTS.*?###\s*END\s+HIDDEN\s+TESTS", re.S)
_EPSILON = 1e-9


@dataclass(frozen=True)
class Problem:
    """Why the version cannot be released: in which notebook and cell (grade id, or None), and what."""

    notebook: str
    cell: str | None
    code: str  # invalid, markers, solution_not_full, learner_not_zero, grader_failed
    detail: str


@dataclass(frozen=True)
class Change:
    """A difference from the current release, per graded cell."""

    notebook: str
    cell: str
    code: str  # added, removed, points, tests, hidden_tests
    before: float | None = None
    after: float | None = None


@dataclass
class Check:
    """The outcome: problems (none: it may be released) and the changes against the current release."""

    problems: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    points: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def _graded_cells(notebook: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    cells = {}
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            cells[meta["grade_id"]] = cell
    return cells


def marker_problems(name: str, notebook: Mapping[str, Any]) -> list[Problem]:
    """Solution and hidden-test markers that are not balanced within their cell."""
    found = []
    for index, cell in enumerate(notebook.get("cells", []), start=1):
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        source = _text(cell.get("source"))
        for kind, pattern in _MARKERS.items():
            open_ = False
            for match in pattern.finditer(source):
                begin = match.group(1) == "BEGIN"
                if begin == open_:  # BEGIN inside BEGIN, or END without BEGIN
                    found.append(Problem(name, grade_id or f"#{index}", "markers",
                                         f"{'BEGIN' if begin else 'END'} {kind}"))
                    break
                open_ = begin
            else:
                if open_:
                    found.append(Problem(name, grade_id or f"#{index}", "markers", f"BEGIN {kind}"))
    return found


def _grade_problems(name: str, result: Mapping[str, Any], *, want_full: bool) -> list[Problem]:
    """Autograded cells of ``result`` (one notebook's) not at full marks (``want_full``) or not at zero."""
    found = []
    for cell in result.get("cells", []):
        if cell.get("needs_manual_grading") or cell.get("score") is None and cell.get("max_score", 0) == 0:
            continue
        score, top = cell.get("score") or 0.0, float(cell.get("max_score") or 0.0)
        if want_full and score < top - _EPSILON:
            found.append(Problem(name, cell["grade_id"], "solution_not_full",
                                 cell.get("error") or f"{score:g}/{top:g}"))
        if not want_full and score > _EPSILON:
            found.append(Problem(name, cell["grade_id"], "learner_not_zero", f"{score:g}/{top:g}"))
    return found


def compare(current: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[Change]:
    """What changed, cell by cell, between two sets of source notebooks ({notebook: parsed notebook})."""
    changes = []
    for name in sorted(set(current) | set(new)):
        before, after = _graded_cells(current.get(name, {})), _graded_cells(new.get(name, {}))
        for grade_id in after.keys() - before.keys():
            changes.append(Change(name, grade_id, "added", after=_points(after[grade_id])))
        for grade_id in before.keys() - after.keys():
            changes.append(Change(name, grade_id, "removed", before=_points(before[grade_id])))
        for grade_id in sorted(before.keys() & after.keys()):
            old, new_cell = before[grade_id], after[grade_id]
            if _points(old) != _points(new_cell):
                changes.append(Change(name, grade_id, "points", _points(old), _points(new_cell)))
            old_source, new_source = _text(old.get("source")), _text(new_cell.get("source"))
            if _HIDDEN.findall(old_source) != _HIDDEN.findall(new_source):
                changes.append(Change(name, grade_id, "hidden_tests"))
            elif _is_test(new_cell) and _HIDDEN.sub("", old_source) != _HIDDEN.sub("", new_source):
                changes.append(Change(name, grade_id, "tests"))
    return sorted(changes, key=lambda c: (c.notebook, c.cell, c.code))


def _points(cell: Mapping[str, Any]) -> float | None:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if not meta.get("grade"):
        return None
    try:
        return float(meta.get("points", 0))
    except (TypeError, ValueError):
        return None


def _is_test(cell: Mapping[str, Any]) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def check_version(course_dir: Path, slug: str, files: Mapping[str, bytes], work_dir: Path, *,
                  current_source: Path | None, cache_dir: Path | None = None,
                  grade: Callable[..., Any] | None = None) -> Check:
    """Check the source notebooks ``files`` ({name.ipynb: bytes}) of assignment ``slug`` as the module says.

    ``course_dir``: the course (its ``nbgrader_config.py`` and the assignment's other source
    files); ``current_source``: the current release's ``source/<slug>`` folder to compare with
    (None for a first release).  ``work_dir`` is emptied and used for the staging course.
    ``grade``: the grading function (by default ``academy.engine.pipeline``'s, see ``_grader``).
    """
    if grade is None:
        grade = _grader()
    check = Check()
    parsed: dict[str, dict[str, Any]] = {}
    shutil.rmtree(work_dir, ignore_errors=True)
    staging = work_dir / "course"
    source = staging / "source" / slug
    source.mkdir(parents=True)
    config = course_dir / "nbgrader_config.py"
    if config.is_file():
        shutil.copy2(config, staging / config.name)
    kept = course_dir / "source" / slug
    if kept.is_dir():
        for path in kept.iterdir():
            if path.is_file() and path.name not in files:
                shutil.copy2(path, source / path.name)
    for name, data in files.items():
        path = source / name
        path.write_bytes(data)
        try:
            check.points += source_notebook_points(path, f"{slug}/{name}")
        except ManifestError as exc:
            check.problems.append(Problem(name, None, "invalid", str(exc)))
            continue
        parsed[name] = json.loads(data)
        check.problems.extend(marker_problems(name, parsed[name]))
    if check.problems:
        return check

    solution = grade(staging, slug, dict(files), student_id="solution", feedback=False, work_root=work_dir / "work",
                     cache_dir=cache_dir)
    check.problems.extend(_result_problems(solution, want_full=True))
    if not check.problems:
        from academy.engine.pipeline import release_notebooks

        learner = release_notebooks(staging, slug, cache_dir=cache_dir)
        blank = grade(staging, slug, {f"{n}.ipynb": data for n, data in learner.items() if f"{n}.ipynb" in files},
                      student_id="learner", feedback=False, work_root=work_dir / "work", cache_dir=cache_dir)
        check.problems.extend(_result_problems(blank, want_full=False))
    current = {}
    if current_source is not None and current_source.is_dir():
        for name in files:
            path = current_source / name
            if path.is_file():
                current[name] = json.loads(path.read_bytes())
    check.changes = compare(current, parsed) if current_source is not None else []
    return check


def _grader() -> Callable[..., Any]:
    """How to grade from here: in this process when it is a daemonic one (a Celery prefork pool child, as the
    grading worker's are: a process of its own, which may not start children), else in a fresh child process
    (threads, a Flask app: nbgrader changes the working directory while it converts)."""
    import multiprocessing

    from academy.engine.pipeline import grade_in_subprocess, grade_submission

    return grade_submission if multiprocessing.current_process().daemon else grade_in_subprocess


def _result_problems(result: Any, *, want_full: bool) -> list[Problem]:
    data = result.to_json() if hasattr(result, "to_json") else dict(result)
    if data.get("status") == "grader_error":
        return [Problem("", None, "grader_failed", "; ".join(data.get("problems") or []) or "grader error")]
    found = []
    for notebook in data.get("notebooks", []):
        name = notebook.get("name", "")
        found.extend(_grade_problems(name if name.endswith(".ipynb") else f"{name}.ipynb", notebook,
                                     want_full=want_full))
    return found
