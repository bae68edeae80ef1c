"""The grading pipeline and ``academy grade``: real nbgrader, real kernels in the lab environment.

No mocks: every grade here comes from nbgrader executing notebooks in a kernel of
``.venv-lab`` (inside the grading sandbox where this machine has one).  The reference is
nbgrader's own documentation course, which ships inside the nbgrader package, graded by
plain ``nbgrader autograde``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.engine.plain_nbgrader import recorded
from tests.support import COURSES, LAB_PYTHON, ROOT, skip_or_fail

VENV_BIN = Path(sys.executable).parent

def _docs_course() -> Path:
    import nbgrader

    return Path(nbgrader.__file__).parent / "docs" / "source" / "user_guide"


@pytest.fixture(scope="session", autouse=True)
def lab_environment() -> None:
    """The learners' interpreter must exist: kernels never run with the portal's Python."""
    if not os.access(LAB_PYTHON, os.X_OK):
        skip_or_fail(f"the lab environment {LAB_PYTHON} is missing (make lab-env)")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generate_assignment cache for the whole run (as a worker would keep one)."""
    return tmp_path_factory.mktemp("grading-cache")


@pytest.fixture
def env(cache_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment of an ``academy grade`` process: no portal settings, a private cache and data dir."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    values.update({
        "ACADEMY_GRADING_CACHE_DIR": str(cache_dir),
        "ACADEMY_DATA_DIR": str(tmp_path / "data"),
        "ACADEMY_LAB_PYTHON": str(LAB_PYTHON),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return values


def grade(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``academy grade ARGS`` as a separate process."""
    return subprocess.run([sys.executable, "-m", "academy.cli", "grade", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


def grade_here(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
               ) -> subprocess.CompletedProcess[str]:
    """``academy grade ARGS`` run by click's test runner in this process, with ``env``'s academy settings: for the
    refusals, which never reach a kernel (a process each cost 1.2 CPU-s; one case still runs as a real process)."""
    from click.testing import CliRunner

    from academy.cli import grade_command

    for name in [name for name in os.environ if name.startswith("ACADEMY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("ACADEMY_"):
            monkeypatch.setenv(name, value)
    result = CliRunner().invoke(grade_command, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["academy", "grade", *map(str, args)], result.exit_code, result.stdout,
                                       result.stderr)


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its type, mode and content hash (for byte-for-byte checks)."""
    digest = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "d" if stat.S_ISDIR(info.st_mode) else "f"
        content = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "f" else ""
        digest[str(path.relative_to(root))] = f"{kind} {stat.S_IMODE(info.st_mode):o} {content}"
    return digest


def copy_course(source: Path, target: Path, *, extra_config: str = "") -> Path:
    """A writable copy of a course directory, optionally with lines added to its nbgrader_config.py."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("autograded", "feedback", "release",
                                                                   "gradebook.db", "__pycache__"))
    if extra_config:
        config = target / "nbgrader_config.py"
        text = config.read_text() if config.exists() else "c = get_config()  # noqa: F821\n"
        config.write_text(text + "\n" + extra_config + "\n")
    return target


def docs_copy(target: Path) -> Path:
    """nbgrader's documentation course (source/ps1, submitted/bitdiddle, submitted/hacker) with a config."""
    docs = _docs_course()
    target.mkdir()
    shutil.copytree(docs / "source", target / "source", ignore=shutil.ignore_patterns("ps1_autotest"))
    shutil.copytree(docs / "submitted", target / "submitted")
    (target / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\n'
        'c.CourseDirectory.course_id = "nbgrader-docs"\n'
        'c.IncludeHeaderFooter.header = "source/header.ipynb"\n'
    )
    return target


def autograded_scores(result: dict[str, Any]) -> dict[tuple[str, str], float | None]:
    """``(notebook, grade_id) -> score`` (None while the cell waits for a human)."""
    return {(nb["name"], cell["grade_id"]): cell["score"] for nb in result["notebooks"] for cell in nb["cells"]}


def test_result_has_the_design_shape(env: dict[str, str], tmp_path: Path) -> None:
    """The JSON object has exactly DESIGN.md's keys, floats for scores, null errors on passing cells."""
    course = COURSES / "python-data"
    before = tree_digest(course)
    solution = course / "source" / "01-pandas-basics" / "production_log.ipynb"
    run = grade(["--course", course, "--assignment", "01-pandas-basics", "--json", solution], env)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    result = json.loads(run.stdout)
    assert set(result) == {"status", "score", "max_score", "notebooks", "problems", "flags"}
    assert result["flags"] == []
    assert result["status"] == "graded"
    notebook = result["notebooks"][0]
    assert set(notebook) == {"name", "score", "max_score", "cells"}
    assert notebook["name"] == "production_log"
    for cell in notebook["cells"]:
        assert {"grade_id", "score", "max_score", "error"} <= set(cell)
        assert isinstance(cell["max_score"], float)
    assert isinstance(result["score"], float) and isinstance(result["max_score"], float)
    assert tree_digest(course) == before


@pytest.mark.slow
def test_docs_example_scores_equal_plain_nbgrader(env: dict[str, str], tmp_path: Path) -> None:
    """Per-cell autograded scores match ``nbgrader autograde`` on nbgrader's own example course."""
    ours = docs_copy(tmp_path / "ours")
    theirs = docs_copy(tmp_path / "theirs")
    before = tree_digest(ours)

    results = {}
    for student in ("bitdiddle", "hacker"):
        folder = ours / "submitted" / student / "ps1"
        run = grade(["--course", ours, "--assignment", "ps1", "--student", student, "--json",
                     folder / "problem1.ipynb", folder / "problem2.ipynb"], env)
        assert run.returncode == 0, run.stderr
        results[student] = json.loads(run.stdout)
    assert tree_digest(ours) == before

    # Plain nbgrader (recorded per input and version: tests/engine/plain_nbgrader.py, ``recorded``).
    plain = recorded("docs-example", theirs, lambda: _plain_docs_scores(theirs, env, tmp_path, list(results)))
    for student, result in results.items():
        ours_scores = autograded_scores(result)
        reference = {(nb, grade_id): (auto_score, needs_manual)
                     for nb, grade_id, auto_score, needs_manual in plain[student]["cells"]}
        assert set(ours_scores) == set(reference)
        for key, (auto_score, needs_manual) in reference.items():
            if needs_manual:
                assert ours_scores[key] is None, key
            else:
                assert ours_scores[key] == pytest.approx(auto_score), key
        assert result["score"] == pytest.approx(plain[student]["score"])
        assert result["max_score"] == pytest.approx(plain[student]["max_score"])
    assert results["bitdiddle"]["score"] == 1.5 and results["hacker"]["score"] == 3.0
    assert results["hacker"]["problems"] == []
    # Ben Bitdiddle commented out a test and emptied another one: the grader notices.
    assert any("correct_squares" in p and "changed" in p for p in results["bitdiddle"]["problems"])


def _plain_docs_scores(course: Path, env: dict[str, str], tmp_path: Path, students: list[str]) -> dict[str, Any]:
    """``nbgrader generate_assignment`` and ``autograde`` on the documentation course, with a "python" kernelspec
    for the lab interpreter: per student, every grade's (notebook, grade id, auto score, needs a human) and the
    totals."""
    kernels = tmp_path / "jupyter" / "kernels" / "python"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(LAB_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (lab)", "language": "python"}))
    plain_env = {**env, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    for step in (["generate_assignment", "ps1", "--force"], ["autograde", "ps1", "--force"]):
        run = subprocess.run([str(VENV_BIN / "nbgrader"), *step], capture_output=True, text=True, cwd=course,
                             env=plain_env, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]

    from nbgrader.api import Gradebook

    plain = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "nbgrader-docs") as gradebook:
        for student in students:
            submission = gradebook.find_submission("ps1", student)
            plain[student] = {"cells": sorted([nb.name, g.name, g.auto_score, g.needs_manual_grade]
                                              for nb in submission.notebooks for g in nb.grades),
                              "score": submission.score, "max_score": submission.max_score}
    return plain


# One assignment: tests/curriculum grades the solution and the release of every shipped assignment (full marks,
# zero); this test adds what the pipeline itself promises around a grade (manual cells wait, the job directory
# goes, the course folder is untouched), which does not depend on the notebook.
@pytest.mark.slow
@pytest.mark.parametrize(("course", "assignment", "notebook"), [
    ("ml-quality", "01-linear-regression", "defect_regression"),
])
def test_sample_courses_solution_full_marks_release_zero(course: str, assignment: str, notebook: str,
                                                         cache_dir: Path, tmp_path: Path) -> None:
    """The solution earns every autograded point; the notebook learners receive earns none."""
    from academy.engine.pipeline import grade_submission, release_notebooks

    course_dir = COURSES / course
    before = tree_digest(course_dir)
    solution = course_dir / "source" / assignment / f"{notebook}.ipynb"
    result = grade_submission(course_dir, assignment, [solution], cache_dir=cache_dir, work_root=tmp_path)
    assert result.status.value == "graded", result.problems
    autograded = [cell for nb in result.notebooks for cell in nb.cells if not cell.needs_manual_grading]
    assert autograded and all(cell.score == cell.max_score and cell.error is None for cell in autograded)
    manual = [cell for nb in result.notebooks for cell in nb.cells if cell.needs_manual_grading]
    assert manual and all(cell.score is None for cell in manual)
    assert result.score == sum(cell.max_score for cell in autograded)
    assert result.max_score == sum(cell.max_score for cell in autograded + manual)

    released = release_notebooks(course_dir, assignment, cache_dir=cache_dir)
    assert set(released) == {notebook}
    result = grade_submission(course_dir, assignment, released, cache_dir=cache_dir, work_root=tmp_path)
    assert result.status.value == "graded", result.problems
    assert result.score == 0.0
    assert all(cell.score in (0.0, None) for nb in result.notebooks for cell in nb.cells)
    assert all(cell.error for nb in result.notebooks for cell in nb.cells if cell.grade_id.startswith("test_"))
    assert result.problems == []  # the untouched release is not "tampered"
    assert list(tmp_path.iterdir()) == []  # job directories are removed
    assert tree_digest(course_dir) == before


def _v4(cells: list[dict[str, Any]] | None = None, minor: int = 5) -> dict[str, Any]:
    return {"cells": cells or [], "metadata": {}, "nbformat": 4, "nbformat_minor": minor}


def _code(cell_id: str, source: str = "x = 1") -> dict[str, Any]:
    return {"cell_type": "code", "id": cell_id, "metadata": {}, "execution_count": None, "outputs": [],
            "source": source}


BAD_INPUTS = {
    "not-json": (b"this is not a notebook", "not a JSON notebook"),
    "empty": (b"", "empty"),
    "nbformat-3": (json.dumps({"metadata": {}, "nbformat": 3, "nbformat_minor": 0,
                               "worksheets": [{"cells": []}]}).encode(), "nbformat 4 only"),
    "invalid-utf8": (b'{"cells": [], "metadata": {"x": "\xff\xfe"}, "nbformat": 4, "nbformat_minor": 5}',
                     "not UTF-8"),
    # valid JSON whose escape decodes to no character: it cannot be written back as text
    "lone-surrogate": (json.dumps({**_v4([_code("a", 'print("\\ud800")')]),
                                   "metadata": {"note": "\ud800"}}).encode(), "not valid text"),
    "duplicate-ids": (json.dumps(_v4([_code("same"), _code("same")])).encode(), "duplicate cell ids"),
    "schema": (json.dumps({**_v4(), "cells": [{"cell_type": "code"}]}).encode(), "not a valid nbformat 4"),
    "deep": (b'{"cells": [], "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b'}, "nbformat": 4}', "nested"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_notebooks_are_refused_with_one_line(case: str, env: dict[str, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Unusable notebooks: exit 2, one line on stderr, nothing printed, nothing written to the course."""
    data, expected = BAD_INPUTS[case]
    course = COURSES / "python-data"
    before = tree_digest(course)
    path = tmp_path / "production_log.ipynb"
    path.write_bytes(data)
    args = ["--course", course, "--assignment", "01-pandas-basics", "--json", path]
    run = grade(args, env) if case == "not-json" else grade_here(args, env, monkeypatch)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert tree_digest(course) == before


@pytest.mark.parametrize("case", ["wrong-assignment", "unknown-notebook", "not-a-file", "no-course"])
def test_wrong_names_are_refused_with_one_line(case: str, env: dict[str, str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing assignment, a notebook the assignment does not have, a directory: exit 2, one line."""
    course = COURSES / "python-data"
    before = tree_digest(course)
    solution = course / "source" / "01-pandas-basics" / "production_log.ipynb"
    other = tmp_path / "homework.ipynb"
    shutil.copy(solution, other)
    args, expected = {
        "wrong-assignment": (["--course", course, "--assignment", "99-missing", solution], "not found"),
        "unknown-notebook": (["--course", course, "--assignment", "01-pandas-basics", other], "not part of"),
        "not-a-file": (["--course", course, "--assignment", "01-pandas-basics", tmp_path], "not a file"),
        "no-course": (["--course", tmp_path / "nowhere", "--assignment", "01-pandas-basics", solution],
                      "does not exist"),
    }[case]
    run = grade_here([*args, "--json"], env, monkeypatch)
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert run.stdout == ""
    assert tree_digest(course) == before


def test_tampered_notebook_is_graded_with_problems(cache_dir: Path, tmp_path: Path) -> None:
    """Deleted, duplicated, re-pointed and foreign nbgrader cells: graded, noticed, never a grader error.

    Plain nbgrader 0.9.6 stops on two of these (a duplicated grade cell leaves metadata its own
    schema check refuses; a deleted test after a deleted answer is a KeyError).
    """
    from academy.engine.pipeline import grade_submission

    course = COURSES / "python-data"
    nb = json.loads((course / "source" / "01-pandas-basics" / "production_log.ipynb").read_text())

    def grade_id(cell: dict[str, Any]) -> str | None:
        return cell["metadata"].get("nbgrader", {}).get("grade_id")

    nb["cells"] = [c for c in nb["cells"] if grade_id(c) not in ("summarize_by_line", "test_summarize_by_line")]
    index = [grade_id(c) for c in nb["cells"]].index("test_add_defect_rate")
    duplicate = {**nb["cells"][index], "id": "copy-of-test"}
    foreign = json.loads(json.dumps({**nb["cells"][index], "id": "foreign"}))
    foreign["metadata"]["nbgrader"]["grade_id"] = "from_another_notebook"
    nb["cells"][index + 1:index + 1] = [duplicate]
    nb["cells"].append(foreign)
    for cell in nb["cells"]:
        if grade_id(cell) == "test_find_bad_days":
            cell["metadata"]["nbgrader"]["points"] = 100

    result = grade_submission(course, "01-pandas-basics", {"production_log.ipynb": json.dumps(nb).encode()},
                              cache_dir=cache_dir, work_root=tmp_path)
    assert result.status.value == "graded", result.problems
    scores = {cell.grade_id: cell.score for cell in result.notebooks[0].cells}
    assert scores["test_add_defect_rate"] == 2.0
    assert scores["test_summarize_by_line"] == 0.0  # restored test, stub answer
    assert scores["test_find_bad_days"] == 2.0  # its points come from the gradebook, not the file
    assert result.max_score == 12.0
    problems = "\n".join(result.problems)
    for expected in ("'test_summarize_by_line' was deleted", "'test_add_defect_rate' appears 2 times",
                     "unknown nbgrader cell 'from_another_notebook'", "metadata of cell 'test_find_bad_days'"):
        assert expected in problems


def _with_cell(source_nb: Path, grade_id: str, source: str, target: Path) -> Path:
    nb = json.loads(source_nb.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            cell["source"] = source
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(nb))
    return target


@pytest.mark.slow
@pytest.mark.parametrize(("case", "code", "expected"), [
    pytest.param("infinite-loop", "while True:\n    pass\n", "timeout", id="infinite-loop"),
    pytest.param("ignores-interrupt", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                 "while True:\n    pass\n", "timeout", id="ignores-interrupt"),
    pytest.param("kernel-exit", "import os\nos._exit(3)\n", "kernel died", id="kernel-exit"),
])
def test_learner_code_failure_keeps_other_points(case: str, code: str, expected: str, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """A runaway or crashing cell: learner_code_failed, its test gets 0, the cells before keep their points."""
    timeout = 3
    course = copy_course(COURSES / "python-data", tmp_path / "course",
                         extra_config=f"c.ExecutePreprocessor.timeout = {timeout}")
    before = tree_digest(course)
    solution = course / "source" / "01-pandas-basics" / "production_log.ipynb"
    notebook = _with_cell(solution, "summarize_by_line", code, tmp_path / "submission" / "production_log.ipynb")
    started = time.monotonic()
    run = grade(["--course", course, "--assignment", "01-pandas-basics", "--json", notebook], env)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "learner_code_failed"
    scores = autograded_scores(result)
    assert scores[("production_log", "test_add_defect_rate")] == 2.0  # before the failure: kept
    assert scores[("production_log", "test_summarize_by_line")] == 0.0
    cells = {cell["grade_id"]: cell for cell in result["notebooks"][0]["cells"]}
    assert cells["test_summarize_by_line"]["error"]
    if case == "infinite-loop":  # the interrupt worked: the kernel lives on and later tests pass
        assert scores[("production_log", "test_find_bad_days")] == 2.0
    assert any(expected in problem and "summarize_by_line" in problem for problem in result["problems"]), result
    assert elapsed < timeout + 45, elapsed
    assert tree_digest(course) == before


@pytest.mark.slow
def test_feedback_and_all_students(env: dict[str, str], tmp_path: Path) -> None:
    """``--feedback`` writes the learner's HTML; ``--all --workers 2`` prints one JSON line per student."""
    course = docs_copy(tmp_path / "course")
    before = tree_digest(course)

    outdir = tmp_path / "feedback"
    folder = course / "submitted" / "hacker" / "ps1"
    run = grade(["--course", course, "--assignment", "ps1", "--feedback", outdir, folder / "problem1.ipynb"], env)
    assert run.returncode == 0, run.stderr
    assert "total" in run.stdout and "graded" in run.stdout  # the human-readable table
    html = (outdir / "problem1.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "squares" in html
    assert "problem2: not submitted (0 points)" in run.stdout

    all_feedback = tmp_path / "all-feedback"
    run = grade(["--course", course, "--assignment", "ps1", "--all", "--workers", "2", "--json",
                 "--feedback", all_feedback], env)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["student"] for line in lines] == ["bitdiddle", "hacker"]
    assert [line["score"] for line in lines] == [1.5, 3.0]
    assert all(line["status"] == "graded" and line["max_score"] == 13.0 for line in lines)
    # the workers come from a fork server that warmed the feedback templates up
    assert (all_feedback / "hacker" / "problem1.html").read_text(encoding="utf-8") == html
    assert "<html" in (all_feedback / "bitdiddle" / "problem1.html").read_text(encoding="utf-8").lower()
    assert tree_digest(course) == before
