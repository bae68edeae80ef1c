"""What ``academy init`` checks in each course beyond its manifest, so a broken course is refused by name.

- **Imports**: every module a notebook imports must be importable in the lab environment, the one the
  labs and the grader's sandbox run (``ACADEMY_LAB_PYTHON``, else ``.venv-lab``), or be a file beside the
  notebook.  Asked of that interpreter once for the whole catalogue (``importlib.util.find_spec``: nothing
  is imported).
- **Solutions**: each assignment goes through the checks a new version must pass before release
  (:func:`academy.teaching.publish.check_version`): the instructor's source scores full marks on every
  autograded cell and the learner version, untouched, scores zero, in the real grader.  This runs notebooks,
  so results are kept per content (the assignment's files and the course's ``nbgrader_config.py``) under the
  grading cache: a course is graded again only when something in it changed.

Each problem names the course, the notebook and the cell.  No Flask, no database.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from academy.catalog.manifest import Catalog, CourseManifest, RefusedCourse

__all__ = ["course_checks", "missing_imports", "solution_problems"]

_FIND = ("import importlib.util, json, sys\n"
         "names = json.load(sys.stdin)\n"
         "def missing(name):\n"
         "    try:\n"
         "        return importlib.util.find_spec(name) is None\n"
         "    except (ImportError, ValueError):\n"
         "        return True\n"
         "print(json.dumps([n for n in names if missing(n)]))\n")
CHECKS_VERSION = "1"  # bump when what a kept result means changes


def _display(course: CourseManifest, *parts: str) -> str:
    return "/".join((course.directory.parent.name, course.directory.name, *parts))


def missing_imports(courses: Iterable[CourseManifest], python: str) -> tuple[list[RefusedCourse], list[str]]:
    """Courses whose notebooks import a module the lab environment lacks; and notes (the check could not run)."""
    courses = list(courses)
    local = {(course.slug, a.slug): _local_modules(course.directory / "source" / a.slug)
             for course in courses for a in course.assignments}
    wanted = {module for course in courses for a in course.assignments for _, _, module in a.imports
              if module not in local[course.slug, a.slug]}
    if not wanted:
        return [], []
    if not Path(python).is_file():
        return [], [f"lab interpreter {python} not found: the notebooks' imports were not checked "
                    "(build it with make lab-env, or set ACADEMY_LAB_PYTHON)"]
    try:
        done = subprocess.run([python, "-c", _FIND], input=json.dumps(sorted(wanted)), capture_output=True,
                              text=True, timeout=120, check=True)
        absent = set(json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return [], [f"could not ask the lab interpreter {python} which modules it has ({exc}): imports not checked"]
    refused = []
    for course in courses:
        problems = []
        for assignment in course.assignments:
            for notebook, cell, module in assignment.imports:
                if module in absent and module not in local[course.slug, assignment.slug]:
                    problems.append(f"{_display(course, 'source', assignment.slug, notebook)}, cell '{cell}': "
                                    f"imports '{module}', which the lab environment does not have "
                                    "(add it to hub_config/lab-requirements.txt, or remove the import)")
        if problems:
            refused.append(RefusedCourse(course.slug, tuple(problems)))
    return refused, []


def _local_modules(directory: Path) -> set[str]:
    """Modules a notebook in ``directory`` can import from beside it (``x.py`` files and packages)."""
    if not directory.is_dir():
        return set()
    return {path.stem if path.suffix == ".py" else path.name for path in directory.iterdir()
            if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").is_file())}


def _content_key(course: CourseManifest, slug: str) -> str:
    digest = hashlib.sha256(f"academy-catalog-check {CHECKS_VERSION}\0{slug}\0".encode())
    config = course.directory / "nbgrader_config.py"
    files = [config] if config.is_file() else []
    files += sorted(path for path in (course.directory / "source" / slug).rglob("*") if path.is_file())
    for path in files:
        name = path.relative_to(course.directory).as_posix().encode()
        data = path.read_bytes()
        digest.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def _problem_text(course: CourseManifest, slug: str, notebook: str, cell: str | None, code: str, detail: str) -> str:
    where = _display(course, "source", slug, notebook) if notebook else _display(course, "source", slug)
    if cell:
        where += f", cell '{cell}'"
    what = {
        "solution_not_full": f"the instructor's solution does not score full marks ({detail})",
        "learner_not_zero": f"the learner version scores {detail} with no answer written: the test passes anyway",
        "grader_failed": f"the grader failed: {detail}",
    }.get(code, detail)
    return f"{where}: {what}"


def check_assignment(course: CourseManifest, slug: str, cache_dir: str | None) -> list[str]:
    """One assignment's solution checks in this process (a pool worker's job); the problems as text."""
    from academy.engine.pipeline import grade_submission
    from academy.teaching.publish import check_version

    source = course.directory / "source" / slug
    files = {path.name: path.read_bytes() for path in sorted(source.glob("*.ipynb"))}
    with tempfile.TemporaryDirectory(prefix="academy-init-check-") as work:
        check = check_version(course.directory, slug, files, Path(work), current_source=None,
                              cache_dir=Path(cache_dir) if cache_dir else None, grade=grade_submission)
    return [_problem_text(course, slug, p.notebook, p.cell, p.code, p.detail) for p in check.problems]


def solution_problems(courses: Sequence[CourseManifest], *, cache_dir: Path | None = None,
                      workers: int | None = None) -> list[RefusedCourse]:
    """Courses with an assignment whose solution or learner version fails the release checks (see the module)."""
    from academy.engine.course import cache_root

    kept_dir = cache_root(cache_dir, None) / "catalog-checks"
    kept_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    todo: list[tuple[CourseManifest, str, Path]] = []
    for course in courses:
        for assignment in course.assignments:
            kept = kept_dir / f"{_content_key(course, assignment.slug)}.json"
            if kept.is_file():
                found.setdefault(course.slug, []).extend(json.loads(kept.read_text(encoding="utf-8")))
            else:
                todo.append((course, assignment.slug, kept))
    if todo:
        workers = max(1, min(len(todo), workers or os.cpu_count() or 1))
        cache = str(cache_dir) if cache_dir else None
        if workers == 1 or multiprocessing.current_process().daemon:
            results = [check_assignment(course, slug, cache) for course, slug, _ in todo]
        else:
            # spawn: nbgrader changes the working directory while it converts, kernels start their own
            # processes; a fresh interpreter per worker keeps both away from the caller.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(check_assignment, *zip(*[(c, s, cache) for c, s, _ in todo], strict=True)))
        for (course, _, kept), problems in zip(todo, results, strict=True):
            found.setdefault(course.slug, []).extend(problems)
            if not any("the grader failed" in problem for problem in problems):  # a failure may be passing
                kept.write_text(json.dumps(problems, ensure_ascii=False), encoding="utf-8")
    return [RefusedCourse(slug, tuple(problems)) for slug, problems in found.items() if problems]


def course_checks(catalog: Catalog, *, python: str, solutions: bool = True, cache_dir: Path | None = None,
                  workers: int | None = None) -> tuple[list[RefusedCourse], list[str]]:
    """Every check of this module on the catalogue's readable courses: (courses refused, notes)."""
    refused, notes = missing_imports(catalog.courses, python)
    if solutions:
        blocked = {course.slug for course in refused}
        refused += solution_problems([c for c in catalog.courses if c.slug not in blocked], cache_dir=cache_dir,
                                     workers=workers)
    return refused, notes
