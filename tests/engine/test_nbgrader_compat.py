"""``academy grade`` against plain ``nbgrader autograde`` on nbgrader's own autograde test notebooks.

The notebooks are those of ``nbgrader/tests/apps/files/`` (inside the installed package),
set up as nbgrader's ``test_nbgrader_autograde.py`` sets them up: one source notebook
``ps1/p1.ipynb``, ``autotests.yml`` at the course root for the autotest cases, a few
students.  Each course is graded twice from identical copies: ``nbgrader generate_assignment``
+ ``nbgrader autograde`` (unsandboxed, a kernelspec for ``.venv-lab``) and
``academy grade --all --json``.  Every student's score must be equal, unless
``DIFFERENCES`` documents why ours differs on purpose.  Plain nbgrader's scores are recorded per input and
version (``plain_nbgrader.recorded``): it runs for real for ``LIVE`` every time, and for the rest when a
notebook or a version changes.

A representative set, not all 35 cases of nbgrader's suite: plain and changed submissions,
the two showtraceback cheat attempts, an extra notebook beside ``p1.ipynb``, and the three
kinds of autotest (simple, hashed, hidden).  One module-scoped setup grades them all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.engine.plain_nbgrader import VENV_BIN, plain_nbgrader_env, recorded, run_nbgrader
from tests.support import LAB_PYTHON, ROOT, skip_or_fail

ASSIGNMENT = "ps1"
#: The scenario plain nbgrader grades for real on every run (and must give its recorded scores); the others'
#: scores are read from tests/engine/plain_nbgrader_reference.json while their inputs and versions are those
#: recorded (tests/engine/plain_nbgrader.py, ``recorded``).
LIVE = "autotest-simple"


def _files() -> Path:
    import nbgrader

    return Path(nbgrader.__file__).parent / "tests" / "apps" / "files"


# course name -> (source notebook, autotests.yml at the root, {student: {file name in the folder: test file}})
SCENARIOS: dict[str, tuple[str, bool, dict[str, dict[str, str]]]] = {
    "plain": ("submitted-unchanged.ipynb", False, {
        "foo": {"p1.ipynb": "submitted-unchanged.ipynb"},
        "bar": {"p1.ipynb": "submitted-changed.ipynb"},
        "spam": {"p1.ipynb": "submitted-cheat-attempt.ipynb"},  # test_showtraceback_exploit
        "eggs": {"p1.ipynb": "submitted-cheat-attempt-alternative.ipynb"},
        # test_skip_extra_notebooks: "p1 copy.ipynb" is not part of the assignment and is ignored
        "extra": {"p1 copy.ipynb": "submitted-unchanged.ipynb", "p1.ipynb": "submitted-changed.ipynb"},
    }),
    "autotest-simple": ("autotest-simple.ipynb", True, {
        "foo": {"p1.ipynb": "autotest-simple-unchanged.ipynb"},
        "bar": {"p1.ipynb": "autotest-simple-changed.ipynb"},
    }),
    "autotest-hashed": ("autotest-hashed.ipynb", True, {
        "foo": {"p1.ipynb": "autotest-hashed-unchanged.ipynb"},
        "bar": {"p1.ipynb": "autotest-hashed-changed.ipynb"},
    }),
    "autotest-hidden": ("autotest-hidden.ipynb", True, {
        "foo": {"p1.ipynb": "autotest-hidden-unchanged.ipynb"},
        "bar": {"p1.ipynb": "autotest-hidden-changed-wrong.ipynb"},
        "baz": {"p1.ipynb": "autotest-hidden-changed-right.ipynb"},
    }),
}

DIFFERENCES: dict[tuple[str, str], str] = {}
"""``(course, student) -> why`` for scores that differ from nbgrader's on purpose (none at present)."""


def _build(course: Path, source: str, autotests: bool, students: dict[str, dict[str, str]]) -> None:
    files = _files()
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(files / source, course / "source" / ASSIGNMENT / "p1.ipynb")
    if autotests:
        shutil.copy(files / "autotests.yml", course / "autotests.yml")
    (course / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = "compat"\n')
    for student, notebooks in students.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        for name, test_file in notebooks.items():
            shutil.copy(files / test_file, folder / name)


def _nbgrader_scores(course: Path, env: dict[str, str]) -> dict[str, float]:
    for step in ("generate_assignment", "autograde"):
        run = run_nbgrader([step, ASSIGNMENT, "--force"], course, env)
        # The head holds what a dying kernel printed, the tail nbgrader's own traceback.
        assert run.returncode == 0, f"{run.stderr[:3000]}\n[…]\n{run.stderr[-3000:]}"
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "compat") as gradebook:
        return {submission.student_id: float(submission.score)
                for submission in gradebook.assignment_submissions(ASSIGNMENT)}


def _academy(course: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "academy.cli", "grade", "--course", str(course), "--assignment", ASSIGNMENT, *args]


def _academy_grade(course: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run = subprocess.run(_academy(course, "--all", "--json"), capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    results = {}
    for line in run.stdout.splitlines():
        data = json.loads(line)
        results[data["student"]] = data
    return run, results


@pytest.fixture(scope="module")
def our_tmp() -> Iterator[Path]:
    """A private TMPDIR for ``academy grade``, short enough that the kernel zygotes' folders land in it."""
    path = Path(tempfile.mkdtemp(prefix="nbc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def zygote_folders(tmp: Path) -> list[Path]:
    """The kernel zygotes' temporary folders (``academy-z-*``) under ``tmp``."""
    return sorted(tmp.glob("academy-z-*"))


@pytest.fixture(scope="module")
def our_env(tmp_path_factory: pytest.TempPathFactory, our_tmp: Path) -> dict[str, str]:
    if not os.access(LAB_PYTHON, os.X_OK):
        skip_or_fail(f"the lab environment {LAB_PYTHON} is missing (make lab-env)")
    base = tmp_path_factory.mktemp("compat-env")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    env.update({"ACADEMY_GRADING_CACHE_DIR": str(base / "cache"), "ACADEMY_DATA_DIR": str(base / "data"),
                "ACADEMY_LAB_PYTHON": str(LAB_PYTHON), "TMPDIR": str(our_tmp),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
    return env


@pytest.fixture(scope="module")
def compat(tmp_path_factory: pytest.TempPathFactory, our_env: dict[str, str], our_tmp: Path) -> dict[str, Any]:
    """Every scenario graded by both tools: {course: {"nbgrader", "ours", "run", "seconds"}}."""
    base = tmp_path_factory.mktemp("compat")
    assert zygote_folders(our_tmp) == []

    def scenario(name: str) -> dict[str, Any]:
        source, autotests, students = SCENARIOS[name]
        ours, theirs = base / "ours" / name, base / "theirs" / name
        _build(ours, source, autotests, students)
        shutil.copytree(ours, theirs)
        # A home of its own: two kernels starting at once in one fresh home race to create IPython's profile
        # and history database, and the loser dies before it answers kernel_info.
        plain_env = plain_nbgrader_env(base / "home" / name, ("python", "python3"))
        started = time.monotonic()
        plain = recorded(f"compat-{name}", theirs, lambda: _nbgrader_scores(theirs, plain_env), live=name == LIVE)
        middle = time.monotonic()
        run, results = _academy_grade(ours, our_env)
        return {"nbgrader": plain, "ours": results, "run": run, "course": ours,
                "seconds": (round(middle - started, 1), round(time.monotonic() - middle, 1))}

    # The scenarios are separate courses in separate folders, and each tool mostly waits on its kernels: two
    # at a time halve the wait.
    with ThreadPoolExecutor(max_workers=2) as pool:
        out: dict[str, Any] = dict(zip(SCENARIOS, pool.map(scenario, SCENARIOS), strict=True))
    print("\nseconds (nbgrader, academy grade):", {name: data["seconds"] for name, data in out.items()})
    return out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_academy_grade_gives_nbgraders_scores(compat: dict[str, Any], name: str) -> None:
    data = compat[name]
    run = data["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(data["ours"]) == sorted(SCENARIOS[name][2]) == sorted(data["nbgrader"])
    for student, theirs in data["nbgrader"].items():
        result = data["ours"][student]
        assert result["status"] == "graded", result
        if (name, student) not in DIFFERENCES:
            assert result["score"] == theirs, (student, result, theirs)


def test_an_extra_notebook_is_skipped_and_reported(compat: dict[str, Any]) -> None:
    """nbgrader's test_skip_extra_notebooks: ``p1 copy.ipynb`` is ignored, ``p1.ipynb`` graded."""
    result = compat["plain"]["ours"]["extra"]
    assert result["score"] == compat["plain"]["ours"]["bar"]["score"]  # the same p1.ipynb as bar's
    assert any("p1 copy.ipynb" in problem and "not part of the assignment" in problem
               for problem in result["problems"]), result["problems"]


def test_cheat_attempts_are_flagged(compat: dict[str, Any]) -> None:
    """The showtraceback exploits (nbgrader's test_showtraceback_exploit) get nbgrader's score, and a flag."""
    for student in ("spam", "eggs"):
        result = compat["plain"]["ours"][student]
        assert result["score"] == compat["plain"]["nbgrader"][student] and result["flags"], result


def test_no_zygote_folder_is_left_behind(compat: dict[str, Any], our_tmp: Path) -> None:
    """Every ``academy grade`` run above stopped its kernel zygotes and removed their folders."""
    assert zygote_folders(our_tmp) == []
    assert list(our_tmp.iterdir()) == []  # nor job folders


def test_an_interrupted_run_cleans_up(compat: dict[str, Any], our_env: dict[str, str]) -> None:
    """SIGTERM during ``--all``: exit 2 with one line, the workers' zygotes stopped and their folders removed."""
    course = compat["plain"]["course"]
    # A TMPDIR of its own: a zygote folder another run of this module left behind must not pass for this
    # run's (the signal would go out before this run started one) nor be blamed on it.
    our_tmp = Path(tempfile.mkdtemp(prefix="nbi-", dir="/tmp"))
    proc = subprocess.Popen(_academy(course, "--all", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**our_env, "TMPDIR": str(our_tmp)}, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not zygote_folders(our_tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert zygote_folders(our_tmp), "no zygote started"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip().splitlines()[-1] == "error: interrupted", err
    assert "Traceback" not in err
    assert zygote_folders(our_tmp) == []
    # A job folder can stay behind if its kernel still wrote into it while the job removed it.
    shutil.rmtree(our_tmp, ignore_errors=True)


def test_a_course_in_another_language_is_refused(tmp_path: Path, our_env: dict[str, str]) -> None:
    """nbgrader would start the notebook's R kernel; the grader runs Python only: exit 2, one line."""
    _build(tmp_path / "r", "submitted-unchanged.ipynb", False, {"foo": {"p1.ipynb": "submitted-unchanged.ipynb"}})
    source = tmp_path / "r" / "source" / ASSIGNMENT / "p1.ipynb"
    nb = json.loads(source.read_text())
    nb["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    source.write_text(json.dumps(nb))
    run = subprocess.run(_academy(tmp_path / "r", str(tmp_path / "r" / "submitted" / "foo" / ASSIGNMENT / "p1.ipynb")),
                         capture_output=True, text=True, env=our_env, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "error: p1.ipynb declares a kernel for R (kernel 'ir'): the grader runs Python notebooks only"]


def test_a_grader_error_exits_2_with_one_line(tmp_path: Path, our_env: dict[str, str]) -> None:
    """An autotest course without autotests.yml: generate_assignment fails, a grader error, exit 2 (never 1)."""
    _build(tmp_path / "c", "autotest-simple.ipynb", False, {"foo": {"p1.ipynb": "autotest-simple-unchanged.ipynb"}})
    run = subprocess.run(_academy(tmp_path / "c", "--json",
                                  str(tmp_path / "c" / "submitted" / "foo" / ASSIGNMENT / "p1.ipynb")),
                         capture_output=True, text=True, env=our_env, cwd=ROOT, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: grader error: generate_assignment failed"), run.stderr
    assert json.loads(run.stdout)["status"] == "grader_error"
