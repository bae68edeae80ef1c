"""``academy init`` on a catalogue with broken courses: each is refused naming its course, notebook and cell,
and the others load (issue 16, "Bad input").  Real grader, real lab interpreter, through the command."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

TRACKS = """[[tracks]]
id = "basics"
[tracks.title]
ko = "기초"
en = "Basics"
"""


def _cell(kind: str, source: str, grade_id: str, *, solution: bool = False, grade: bool = False,
          points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    cell = {"cell_type": kind, "metadata": {"nbgrader": meta}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _notebook(solution: str = "return a + b", *, setup: str = "import math", graded: bool = True) -> dict:
    cells = [
        _cell("code", setup, "setup"),
        _cell("code", f"def add(a, b):\n    ### BEGIN SOLUTION\n    {solution}\n    ### END SOLUTION\n", "add",
              solution=True),
    ]
    if graded:
        cells.append(_cell("code", "assert add(1, 2) == 3, \"덧셈이 틀렸습니다.\"\n", "test_add", grade=True,
                           points=2))
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _course(root: Path, slug: str, notebook: dict | None, *, listed: tuple[str, ...] = ("01-add",)) -> None:
    course = root / slug
    (course / "source" / "01-add").mkdir(parents=True)
    if notebook is not None:
        (course / "source" / "01-add" / "adding.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    (course / "nbgrader_config.py").write_text(
        f'c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = "{slug}"\n', encoding="utf-8")
    entries = "".join(f'\n[[assignments]]\nid = "{a}"\n[assignments.title]\nko = "과제"\nen = "Task"\n' for a in listed)
    (course / "course.toml").write_text(
        f'id = "{slug}"\ntrack = "basics"\nhours = 1.0\n[title]\nko = "과정"\nen = "Course"\n'
        f'[passing]\nmin_score_percent = 60\n{entries}', encoding="utf-8")


@pytest.fixture(scope="module")
def broken_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalogue") / "courses"
    root.mkdir()
    (root / "tracks.toml").write_text(TRACKS, encoding="utf-8")
    _course(root, "good", _notebook())
    _course(root, "missing-assignment", _notebook(), listed=("01-add", "02-gone"))
    _course(root, "no-graded-cells", _notebook(graded=False))
    _course(root, "unknown-import", _notebook(setup="import math\nfrom factory_vision_kit import camera"))
    _course(root, "wrong-solution", _notebook("return a - b"))
    _course(root, "test-passes-blank", _notebook(setup="import math\ndef add(a, b):\n    return a + b"))
    return root


def test_init_refuses_each_broken_course_by_name_and_loads_the_rest(broken_catalogue: Path, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    env.update(ACADEMY_DATA_DIR=str(tmp_path / "data"), ACADEMY_COURSES_DIR=str(broken_catalogue),
               ACADEMY_GRADING_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "academy.cli", "init"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]

    def said(course: str, *words: str) -> None:
        lines = [line for line in errors if line.startswith(f"error: course {course} not loaded: ")]
        assert len(lines) == 1, (course, errors)
        assert all(word in lines[0] for word in words), (words, lines[0])

    said("missing-assignment", "courses/missing-assignment/course.toml, line",
         "no assignment directory source/02-gone/")
    said("no-graded-cells", "source/01-add/", "has no graded cell")
    said("unknown-import", "courses/unknown-import/source/01-add/adding.ipynb, cell 'setup'",
         "imports 'factory_vision_kit'", "lab environment does not have")
    said("wrong-solution", "courses/wrong-solution/source/01-add/adding.ipynb, cell 'test_add'",
         "solution does not score full marks")
    said("test-passes-blank", "courses/test-passes-blank/source/01-add/adding.ipynb, cell 'test_add'",
         "learner version scores 2/2")
    assert len(errors) == 5, errors
    assert "5 course(s) refused" in done.stdout

    with sqlite3.connect(tmp_path / "data" / "academy.sqlite3") as conn:
        assert conn.execute("select slug from course").fetchall() == [("good",)]
        assert conn.execute("select count(*) from assignment_release").fetchone()[0] == 1

    # The grading results are kept per content: a second run grades nothing again and says the same.
    again = subprocess.run([sys.executable, "-m", "academy.cli", "init"], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=300)
    assert again.returncode == 1
    assert [line for line in again.stderr.splitlines() if line.startswith("error: ")] == errors
    assert len(list((tmp_path / "cache" / "catalog-checks").glob("*.json"))) == 3  # good, wrong, blank-passing
