"""The shipped curriculum checked as issue 16 asks: for every assignment of every course under ``courses/``,

1. the instructor's source version scores full marks on every autograded cell, and the released (learner)
   version, untouched, scores zero on every autograded cell without the grader failing
   (both through ``academy.teaching.publish.check_version``, the checks a new version must pass);
2. a deliberately wrong answer for each exercise, kept in ``tests/curriculum/wrong/<course>/<assignment>.toml``,
   loses that exercise's points.

The wrong answers' file::

    # Each [[wrong]] replaces the code of one solution cell of the source notebook with a usual mistake.
    [[wrong]]
    notebook = "production_log.ipynb"
    cell = "defect_rate"               # grade_id of the solution cell replaced
    loses = ["test_defect_rate"]       # grade_ids of the autograded cells that must lose points
    why = "불량 개수를 생산량으로 나누지 않음"   # the mistake it stands for (Korean)
    code = '''
    def defect_rate(log):
        return log["defects"].sum()
    '''

Every autograded cell of the assignment must be named in some ``loses``, so every exercise has its wrong answer.
All of an assignment's wrong answers go into one notebook copy, graded once.

Run one assignment by hand (prints each cell's points and the time taken)::

    .venv/bin/python -m tests.curriculum.check courses/python-data 01-pandas-basics
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COURSES = ROOT / "courses"
WRONG = Path(__file__).resolve().parent / "wrong"
_EPSILON = 1e-9


def assignments(courses: Path = COURSES, *, track: str | None = None) -> list[tuple[str, str]]:
    """(course id, assignment id) of every assignment listed in a course.toml under ``courses`` (of ``track``)."""
    found = []
    for manifest in sorted(courses.glob("*/course.toml")):
        if manifest.parent.name.startswith((".", "_")):
            continue
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        if track is None or data.get("track") == track:
            found.extend((manifest.parent.name, item["id"]) for item in data.get("assignments", []))
    return found


def tracks(courses: Path = COURSES) -> list[str]:
    """Track ids of ``tracks.toml``, in its order."""
    return [t["id"] for t in tomllib.loads((courses / "tracks.toml").read_text(encoding="utf-8")).get("tracks", [])]


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def graded_cells(notebook: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Autograded cells (nbgrader grade, code, not a written answer) by grade id."""
    cells = {}
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and cell.get("cell_type") == "code" and not meta.get("solution"):
            cells[meta["grade_id"]] = cell
    return cells


@dataclass
class Report:
    """What one assignment's checks found, and how long they took."""

    course: str
    assignment: str
    problems: list[str] = field(default_factory=list)
    cells: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # grade id: (solution, wrong, max)
    seconds: float = 0.0

    def text(self) -> str:
        lines = [f"{self.course}/{self.assignment}: {len(self.cells)} autograded cells, "
                 f"{sum(top for _, _, top in self.cells.values()):g} points, {self.seconds:.1f} s"]
        lines += [f"  {gid}: source {sol:g}, wrong {bad:g} of {top:g}" for gid, (sol, bad, top) in self.cells.items()]
        lines += [f"  PROBLEM {p}" for p in self.problems]
        return "\n".join(lines)


def wrong_answers(course: str, assignment: str) -> list[dict[str, Any]]:
    path = WRONG / course / f"{assignment}.toml"
    if not path.is_file():
        return []
    return tomllib.loads(path.read_text(encoding="utf-8")).get("wrong", [])


def _with_wrong_answers(notebooks: dict[str, bytes], wrong: list[dict[str, Any]], report: Report) -> dict[str, bytes]:
    parsed = {name: json.loads(data) for name, data in notebooks.items()}
    for item in wrong:
        notebook = parsed.get(item.get("notebook", ""))
        if notebook is None:
            report.problems.append(f"wrong answer for {item.get('cell')!r}: no notebook {item.get('notebook')!r}")
            continue
        for cell in notebook["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade_id") == item.get("cell"):
                if not meta.get("solution"):
                    report.problems.append(f"{item['notebook']}: {item['cell']!r} is not a solution cell")
                cell["source"] = item["code"].strip("\n") + "\n"
                break
        else:
            report.problems.append(f"{item['notebook']}: no cell {item.get('cell')!r} to replace")
    return {name: json.dumps(notebook).encode() for name, notebook in parsed.items()}


def check_assignment(course: str, assignment: str, work_dir: Path, *, courses: Path = COURSES,
                     cache_dir: Path | None = None) -> Report:
    """Run the checks of the module docstring on one assignment, grading in this process (one job at a time)."""
    from academy.engine.pipeline import grade_submission
    from academy.teaching.publish import check_version

    def grade_in_process(*args: Any, **kwargs: Any) -> Any:
        here = os.getcwd()  # nbgrader changes the working directory while it converts
        try:
            return grade_submission(*args, **kwargs)
        finally:
            os.chdir(here)

    started = time.monotonic()
    report = Report(course, assignment)
    course_dir = courses / course
    source = course_dir / "source" / assignment
    notebooks = {path.name: path.read_bytes() for path in sorted(source.glob("*.ipynb"))}
    if not notebooks:
        report.problems.append(f"no notebook in {source}")
        return report
    check = check_version(course_dir, assignment, notebooks, work_dir / "publish", current_source=None,
                          cache_dir=cache_dir, grade=grade_in_process)
    report.problems += [f"{p.notebook} {p.cell}: {p.code}: {p.detail}" for p in check.problems]
    wanted = {(name, gid) for name, data in notebooks.items() for gid in graded_cells(json.loads(data))}
    wrong = wrong_answers(course, assignment)
    named = {(item.get("notebook"), gid) for item in wrong for gid in item.get("loses", [])}
    report.problems += [f"{name} {gid}: no wrong answer loses this exercise's points (tests/curriculum/wrong)"
                        for name, gid in sorted(wanted - named)]
    report.problems += [f"{name} {gid}: named in 'loses' but not an autograded cell"
                        for name, gid in sorted(named - wanted)]
    if wrong and not report.problems:
        spoilt = _with_wrong_answers(notebooks, wrong, report)
        result = grade_in_process(course_dir, assignment, spoilt, student_id="wrong", feedback=False,
                                     work_root=work_dir / "wrong", cache_dir=cache_dir).to_json()
        if result.get("status") == "grader_error":
            report.problems.append(f"grader failed on the wrong answers: {result.get('problems')}")
        scores = {(nb["name"] if nb["name"].endswith(".ipynb") else f"{nb['name']}.ipynb", c["grade_id"]):
                  (float(c.get("score") or 0.0), float(c.get("max_score") or 0.0))
                  for nb in result.get("notebooks", []) for c in nb.get("cells", [])}
        for name, gid in sorted(named):
            score, top = scores.get((name, gid), (0.0, 0.0))
            report.cells[gid] = (top, score, top)
            if top <= 0 or score > top - _EPSILON:
                report.problems.append(f"{name} {gid}: the wrong answer still scores {score:g}/{top:g}")
    report.seconds = time.monotonic() - started
    return report
