"""Grading throughput and latency: the project's pipeline against plain ``nbgrader autograde``.

Run from the repository root with the portal's environment::

    .venv/bin/python bench/grading.py [--submissions 40] [--workers N] [--repeat 1]
                                      [--skip-baseline] [--skip-portal] [--json]

What it does, in one run (everything in one temporary directory, removed at the end):

1. Builds an nbgrader course: one notebook ``exercises`` with six autograded exercises
   (an answer cell and a test cell with points each; pure Python and NumPy, every cell
   well under a second) and ``--submissions`` submissions under
   ``submitted/<student>/<assignment>/``: correct ones, partly wrong ones, ones whose
   answers raise, and exactly one whose answer is ``while True: pass``.  The course's
   ``nbgrader_config.py`` sets ``ExecutePreprocessor.timeout`` (10 s), so the loop costs
   a known, bounded time.  ``nbgrader generate_assignment`` makes the release the
   submissions are written from.
2. Grades the honest submissions (all but the loop) and then all of them, each batch
   with both tools: ``academy grade --all --json`` (the project's pipeline, sandboxed
   kernels, default workers: two per CPU) and ``nbgrader autograde <assignment>
   --force`` (the baseline: one process, one kernel at a time, unsandboxed).  The
   baseline's kernel is the learners' lab environment (``.venv-lab``), through a
   ``python3`` kernelspec in a private ``JUPYTER_PATH`` (the portal's ``.venv`` has no
   NumPy, so its own ``python3`` kernel could not run the exercises).  Both tools read
   the same ``nbgrader_config.py``.  Wall-clock times cover the whole command; a
   one-submission run of each tool comes first, to warm caches fairly.
   Scores are compared per cell, between the tools and with the expected scores.
3. Grades a few honest submissions in one warm process with ``grade_submission`` (with
   feedback, as the service does) and reads ``GradeResult.timings``: the kernel start
   cost and its share of a submission's time; and starts bare lab kernels, sandboxed and
   plain, to tell the sandbox's share of that cost from Python's.
4. Starts one ``academy worker`` (embedded filesystem queue, SQLite, temporary data
   directory, ``--concurrency 1``), lets it grade a warm-up submission, then times five
   submissions of the shipped ``python-data/01-pandas-basics`` answer key from
   ``submit`` + ``publish`` to the row being finished (polled every 50 ms).

With ``--json`` the last line of standard output is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine import busy_since, cpu_times, loadavg  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LAB_PYTHON = Path(os.environ.get("ACADEMY_LAB_PYTHON") or ROOT / ".venv-lab" / "bin" / "python")

ASSIGNMENT = "ps1"
NOTEBOOK = "exercises"
COURSE_ID = "bench-grading"
CELL_TIMEOUT = 10  # seconds; ExecutePreprocessor.timeout in the course's nbgrader_config.py
LOOP_EXERCISE = "word_counts"

PORTAL_COURSE = "python-data"
PORTAL_ASSIGNMENT = "01-pandas-basics"
PORTAL_NOTEBOOK = ROOT / "courses" / PORTAL_COURSE / "source" / PORTAL_ASSIGNMENT / "production_log.ipynb"
LATENCY_TARGET = 3.0
LATENCY_SAMPLES = 5
POLL_SECONDS = 0.05
THROUGHPUT_TARGET = 3.0  # ours / nbgrader, the goal

# --- the course ------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One autograded exercise: the answer key, a wrong answer, one that raises, and its test."""

    name: str
    points: int
    signature: str
    solution: str
    wrong: str
    raising: str
    test: str


EXERCISES = (
    Exercise(
        "squares", 2, "def squares(n):",
        "return [i * i for i in range(n)]",
        "return [i * i for i in range(1, n + 1)]",
        'raise ValueError("not sure how")',
        "assert squares(5) == [0, 1, 4, 9, 16]\nassert squares(0) == []\nassert len(squares(1000)) == 1000",
    ),
    Exercise(
        "normalize", 2, "def normalize(v):",
        "v = np.asarray(v, dtype=float)\nreturn v / np.linalg.norm(v)",
        "v = np.asarray(v, dtype=float)\nreturn v / v.sum()",
        "return v.astype(float) / np.linalg.norm(v)",  # a list has no astype: AttributeError
        "assert np.allclose(normalize([3, 4]), [0.6, 0.8])\n"
        "assert np.isclose(np.linalg.norm(normalize(np.arange(1, 1001))), 1.0)",
    ),
    Exercise(
        "word_counts", 2, "def word_counts(text):",
        "counts = {}\nfor word in text.lower().split():\n    counts[word] = counts.get(word, 0) + 1\nreturn counts",
        "counts = {}\nfor word in text.split():\n    counts[word] = counts.get(word, 0) + 1\nreturn counts",
        "counts = {}\nfor word in text.split():\n    counts[word] += 1\nreturn counts",  # KeyError
        'assert word_counts("a B b") == {"a": 1, "b": 2}\nassert word_counts("") == {}',
    ),
    Exercise(
        "moving_average", 3, "def moving_average(x, k):",
        'x = np.asarray(x, dtype=float)\nreturn np.convolve(x, np.ones(k) / k, mode="valid")',
        'x = np.asarray(x, dtype=float)\nreturn np.convolve(x, np.ones(k), mode="valid")',  # sums
        'return np.convolve(x, np.ones(k) / k, mode="middle")',  # ValueError
        "assert np.allclose(moving_average([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])\n"
        "assert len(moving_average(np.arange(10_000), 3)) == 9_998",
    ),
    Exercise(
        "is_palindrome", 1, "def is_palindrome(s):",
        "s = [c.lower() for c in s if c.isalnum()]\nreturn s == s[::-1]",
        "return s == s[::-1]",
        "return s.reverse()",  # AttributeError
        'assert is_palindrome("A man, a plan, a canal: Panama")\nassert not is_palindrome("numpy")\n'
        'assert is_palindrome("")',
    ),
    Exercise(
        "column_stats", 2, "def column_stats(m):",
        "m = np.asarray(m, dtype=float)\nreturn m.mean(axis=0), m.max(axis=1)",
        "m = np.asarray(m, dtype=float)\nreturn m.mean(axis=1), m.max(axis=0)",
        "m = np.asarray(m, dtype=float)\nreturn m.mean(axis=2), m.max(axis=1)",  # AxisError
        "means, maxes = column_stats([[1, 2], [3, 8]])\nassert np.allclose(means, [2, 5])\n"
        "assert np.allclose(maxes, [2, 8])\nassert column_stats(np.ones((300, 300)))[0].shape == (300,)",
    ),
)
MAX_SCORE = float(sum(ex.points for ex in EXERCISES))


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def _cell(cell_type: str, source: str, cell_id: str, nbgrader: dict[str, Any] | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": cell_type, "id": cell_id, "metadata": {}, "source": source}
    if nbgrader is not None:
        cell["metadata"]["nbgrader"] = {"schema_version": 3, "task": False, **nbgrader}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def source_notebook() -> dict[str, Any]:
    """The instructor's notebook: six answer cells with solutions, six test cells with points."""
    cells = [_cell("markdown", "# Problem set 1\n\nSix small exercises in Python and NumPy.", "intro"),
             _cell("code", "import numpy as np", "setup")]
    for ex in EXERCISES:
        body = f"{ex.signature}\n    ### BEGIN SOLUTION\n{_indent(ex.solution)}\n    ### END SOLUTION"
        cells.append(_cell("code", body, f"{ex.name}-answer",
                           {"grade": False, "solution": True, "locked": False, "grade_id": f"{ex.name}_answer"}))
        cells.append(_cell("code", ex.test, f"{ex.name}-test",
                           {"grade": True, "solution": False, "locked": True, "grade_id": f"test_{ex.name}",
                            "points": ex.points}))
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@dataclass
class Student:
    """One submission: what each exercise's answer is, and the score it deserves."""

    id: str
    answers: dict[str, str]  # exercise -> "solution" | "wrong" | "raising" | "stub" | "loop"
    kind: str

    @property
    def expected(self) -> dict[str, float]:
        return {f"test_{ex.name}": float(ex.points if self.answers[ex.name] == "solution" else 0)
                for ex in EXERCISES}

    @property
    def expected_score(self) -> float:
        return sum(self.expected.values())


def plan_students(count: int, seed: int = 1) -> list[Student]:
    """``count`` submissions: ``count - 1`` honest ones (four kinds in turn) and one infinite loop."""
    names = [ex.name for ex in EXERCISES]
    students = []
    honest = count - 1
    for index in range(honest):
        rng = random.Random(seed * 1000 + index)
        answers = dict.fromkeys(names, "solution")
        kind = ("correct", "partly wrong", "raises", "mixed")[index % 4]
        if kind != "correct":
            for name in rng.sample(names, rng.randint(1, 3)):
                if kind == "partly wrong":
                    answers[name] = "wrong"
                elif kind == "raises":
                    answers[name] = "raising" if rng.random() < 0.6 else "stub"
                else:
                    answers[name] = rng.choice(("wrong", "raising", "stub"))
        students.append(Student("", answers, kind))
    loop = dict.fromkeys(names, "solution")
    loop[LOOP_EXERCISE] = "loop"
    students.insert(honest // 2, Student("", loop, "infinite loop"))
    for number, student in enumerate(students, 1):
        student.id = f"s{number:03d}" + ("-loop" if student.kind == "infinite loop" else "")
    return students


def student_notebook(release: dict[str, Any], student: Student) -> dict[str, Any]:
    """The released notebook with the student's answers written into the answer cells."""
    nb = copy.deepcopy(release)
    by_id = {f"{ex.name}_answer": ex for ex in EXERCISES}
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        ex = by_id.get(grade_id)
        if ex is None:
            continue
        answer = student.answers[ex.name]
        if answer == "stub":
            continue  # the release's "raise NotImplementedError()" left as it is
        if answer == "loop":
            cell["source"] = "while True:\n    pass"
        else:
            cell["source"] = f"{ex.signature}\n{_indent(getattr(ex, answer))}"
    return nb


# --- processes and paths ---------------------------------------------------------------


class Processes:
    """Every child process the benchmark starts, each in its own session, so it can be ended whole."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[Any]] = []

    def start(self, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.running.append(proc)
        return proc

    def run(self, cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, str, float]:
        """Run to completion; returns (exit code, stdout, stderr, wall seconds)."""
        started = time.perf_counter()
        proc = self.start(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise RuntimeError(f"{' '.join(cmd[:4])} ... did not finish within {timeout:.0f} s") from None
        elapsed = time.perf_counter() - started
        self.running.remove(proc)
        return proc.returncode, out, err, elapsed

    def stream(self, cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
               stderr_path: Path) -> tuple[int, list[tuple[float, str]], str, float]:
        """Run to completion, noting when each stdout line arrived (seconds from the start)."""
        import threading

        started = time.perf_counter()
        with stderr_path.open("w") as err_file:
            proc = self.start(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True)
            timer = threading.Timer(timeout, self.stop, args=(proc, 5.0))
            timer.start()
            lines = []
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append((time.perf_counter() - started, line))
                proc.wait()
            finally:
                timer.cancel()
        elapsed = time.perf_counter() - started
        if proc in self.running:
            self.running.remove(proc)
        if elapsed >= timeout:
            raise RuntimeError(f"{' '.join(cmd[:4])} ... did not finish within {timeout:.0f} s")
        return proc.returncode, lines, stderr_path.read_text(errors="replace"), elapsed

    def stop(self, proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
        """SIGTERM to the process group, then SIGKILL after ``grace`` seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc, grace=5.0)


def _short_tempdir() -> Path:
    """A private temp root short enough for the kernels' Unix socket paths."""
    base = tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix="acbench-", dir=base if len(base) < 40 else "/tmp"))


def tool_env(tmp: Path) -> dict[str, str]:
    """The environment both tools run in: no ACADEMY_* settings from outside, private Jupyter paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACADEMY_", "JUPYTER_"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",  # nbgrader runs `alembic`
        "TMPDIR": str(tmp / "t"),  # the pipeline's job directories land here
        "ACADEMY_GRADING_CACHE_DIR": str(tmp / "cache"),
        "JUPYTER_PATH": str(tmp / "jupyter"),  # the lab kernelspec for plain nbgrader
        "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),  # no ~/.jupyter configuration
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONWARNINGS": "ignore",
    })
    for name in ("t", "cache", "jupyter-config", "jupyter-runtime"):
        (tmp / name).mkdir(mode=0o700, exist_ok=True)
    spec = tmp / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(LAB_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (lab)", "language": "python", "metadata": {"debugger": False},
    }))
    return env


def _academy() -> list[str]:
    script = VENV_BIN / "academy"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "academy.cli"]


def _nbgrader() -> list[str]:
    script = VENV_BIN / "nbgrader"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nbgrader"]


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- building the courses --------------------------------------------------------------


@dataclass
class Courses:
    master: Path  # source + release + gradebook, no submissions
    warmup: Path  # one honest submission
    no_loop: Path  # the honest submissions
    with_loop: Path  # all of them
    students: list[Student] = field(default_factory=list)


def build_courses(tmp: Path, count: int, procs: Processes, env: dict[str, str]) -> Courses:
    master = tmp / "course"
    (master / "source" / ASSIGNMENT).mkdir(parents=True)
    (master / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.ExecutePreprocessor.timeout = {CELL_TIMEOUT}\n"
    )
    (master / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").write_text(json.dumps(source_notebook(), indent=1))
    code, out, err, _ = procs.run([*_nbgrader(), "generate_assignment", ASSIGNMENT, "--force"],
                                  cwd=master, env=env, timeout=300)
    if code != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{_tail(out + err)}")
    release = json.loads((master / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text())
    students = plan_students(count)
    courses = Courses(master, tmp / "course-warmup", tmp / "course-no-loop", tmp / "course-with-loop", students)
    honest = [s for s in students if s.kind != "infinite loop"]
    for target, members in ((courses.warmup, honest[:1]), (courses.no_loop, honest), (courses.with_loop, students)):
        shutil.copytree(master, target)
        for student in members:
            folder = target / "submitted" / student.id / ASSIGNMENT
            folder.mkdir(parents=True)
            (folder / f"{NOTEBOOK}.ipynb").write_text(json.dumps(student_notebook(release, student), indent=1))
    return courses


# --- grading batches -------------------------------------------------------------------


@dataclass
class Batch:
    tool: str
    label: str
    count: int
    seconds: float
    scores: dict[str, dict[str, float | None]]  # student -> grade_id -> score
    statuses: dict[str, str]
    problems: dict[str, list[str]]
    arrivals: list[float] = field(default_factory=list)  # seconds from the start to each result line
    cpu_busy: float | None = None  # the machine's CPU busy fraction (all cores) during the batch

    @property
    def per_minute(self) -> float:
        return self.count / self.seconds * 60.0 if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        data = {"submissions": self.count, "seconds": round(self.seconds, 3),
                "per_minute": round(self.per_minute, 2),
                "seconds_per_submission": round(self.seconds / self.count, 3) if self.count else None,
                "machine_cpu_busy": None if self.cpu_busy is None else round(self.cpu_busy, 3)}
        if len(self.arrivals) >= 2:
            # Start-up (process start, imports, pool) and the rate once results flow.
            first, last = self.arrivals[0], self.arrivals[-1]
            data["first_result_s"] = round(first, 3)
            rate = (len(self.arrivals) - 1) / (last - first) * 60 if last > first else None
            data["steady_per_minute"] = None if rate is None else round(rate, 2)
        return data


def grade_ours(course: Path, label: str, count: int, workers: int | None, procs: Processes,
               env: dict[str, str]) -> Batch:
    cmd = [*_academy(), "grade", "--course", str(course), "--assignment", ASSIGNMENT, "--all", "--json"]
    if workers:
        cmd += ["--workers", str(workers)]
    before = cpu_times()
    code, lines, err, seconds = procs.stream(cmd, cwd=ROOT, env=env, timeout=120 + 60 * count,
                                             stderr_path=course.parent / f"ours-{label}.stderr")
    busy = busy_since(before)
    scores, statuses, problems, arrivals = {}, {}, {}, []
    for arrived, line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        arrivals.append(arrived)
        data = json.loads(line)
        student = data["student"]
        statuses[student] = data["status"]
        problems[student] = data.get("problems", [])
        scores[student] = {cell["grade_id"]: cell["score"] for nb in data["notebooks"] for cell in nb["cells"]}
    if len(statuses) != count:
        raise RuntimeError(f"academy grade --all returned {len(statuses)} of {count} results (exit {code}):\n"
                           f"{_tail(err)}")
    return Batch("ours", label, count, seconds, scores, statuses, problems, arrivals, busy)


def grade_nbgrader(course: Path, label: str, count: int, procs: Processes, env: dict[str, str]) -> Batch:
    before = cpu_times()
    code, out, err, seconds = procs.run([*_nbgrader(), "autograde", ASSIGNMENT, "--force"],
                                        cwd=course, env=env, timeout=120 + 60 * count)
    busy = busy_since(before)
    if code != 0:
        raise RuntimeError(f"nbgrader autograde failed (exit {code}):\n{_tail(out + err)}")
    from nbgrader.api import Gradebook, MissingEntry

    scores: dict[str, dict[str, float | None]] = {}
    statuses: dict[str, str] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        for student_dir in sorted((course / "submitted").iterdir()):
            try:
                submission = gradebook.find_submission(ASSIGNMENT, student_dir.name)
            except MissingEntry:
                statuses[student_dir.name] = "missing"
                continue
            statuses[student_dir.name] = "graded"
            scores[student_dir.name] = {grade.name: (None if grade.score is None else float(grade.score))
                                        for nb in submission.notebooks for grade in nb.grades}
    problems: dict[str, list[str]] = {student: [] for student in statuses}
    current = None
    for line in err.splitlines():  # nbgrader's log: attribute its errors to the student being graded
        match = re.search(r"Creating/updating student with ID '([^']+)'", line)
        if match:
            current = match.group(1)
        elif current in problems and "| ERROR]" in line:
            problems[current].append(line.split("]", 1)[1].strip())
    return Batch("nbgrader", label, count, seconds, scores, statuses, problems, [], busy)


def compare(a: Batch, b: Batch, students: list[Student]) -> list[str]:
    """Students (honest ones) whose per-cell scores differ between ``a`` and ``b``."""
    return [s.id for s in students if s.kind != "infinite loop" and a.scores.get(s.id) != b.scores.get(s.id)]


def wrong_against_expected(batch: Batch, students: list[Student]) -> list[str]:
    return [s.id for s in students if s.id in batch.statuses and s.kind != "infinite loop"
            and batch.scores.get(s.id) != s.expected]


# --- kernel start share ----------------------------------------------------------------


def kernel_start_share(courses: Courses, tmp: Path, samples: int) -> dict[str, Any]:
    """``grade_submission`` (with feedback) on a few honest submissions in one warm process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from academy.engine.pipeline import grade_submission

    honest = [s for s in courses.students if s.kind != "infinite loop"][: samples + 1]
    work = tmp / "timings"
    work.mkdir()
    timings: list[dict[str, float]] = []
    sandboxed = False
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for student in honest:
            notebook = courses.no_loop / "submitted" / student.id / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
            result = pool.submit(grade_submission, courses.no_loop, ASSIGNMENT, [notebook], student_id=student.id,
                                 feedback=True, work_root=work, cache_dir=tmp / "cache").result()
            if result.status.value == "grader_error":
                raise RuntimeError(f"grade_submission failed: {result.problems}")
            timings.append(dict(result.timings))
            sandboxed = result.sandboxed
    cold, warm = timings[0], timings[1:] or timings

    def mean(key: str) -> float:
        return statistics.fmean(t.get(key, 0.0) for t in warm)

    kernel, total = mean("kernel_start"), mean("total")
    keys = sorted({key for t in warm for key in t}, key=lambda k: -mean(k))
    return {
        "samples": len(warm),
        "timings_mean_s": {key: round(mean(key), 3) for key in keys},  # every stage the pipeline reports
        "kernel_start_s": round(kernel, 3),
        "autograde_s": round(mean("autograde"), 3),
        "execution_s": round(mean("kernel_and_execution") - kernel, 3),  # cells and kernel shutdown
        "feedback_s": round(mean("feedback"), 3),
        "total_s": round(total, 3),
        "kernel_start_share": round(kernel / total, 3) if total else None,
        "first_job_total_s": round(cold.get("total", 0.0), 3),
        "first_job_kernel_start_s": round(cold.get("kernel_start", 0.0), 3),
        "sandboxed": sandboxed,
    }


def bare_kernel_starts(tmp: Path, samples: int) -> dict[str, Any]:
    """Start, wait for ready and shut down lab kernels: sandboxed (the grader's) and plain (nbgrader's)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import KernelManager

    from academy.engine import sandbox

    class PlainLabKernel(KernelManager):
        """What nbgrader starts here: the lab interpreter, TCP, no sandbox."""

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[str(LAB_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="lab", language="python")

    workdir = tmp / "kernel-workdir"
    workdir.mkdir()
    makers: dict[str, Any] = {"plain": PlainLabKernel}
    policy = sandbox.SandboxPolicy()
    if sandbox.probe_isolation(policy).sandbox_available:
        makers["sandboxed"] = sandbox.kernel_manager_class(policy, workdir, asynchronous=False)
    figures: dict[str, Any] = {"sandboxed_start_s": None, "sandboxed_shutdown_s": None}
    for name, maker in makers.items():
        starts, stops = [], []
        for index in range(samples + 1):  # the first start warms the file cache and is dropped
            km = maker(connection_file=str(workdir.parent / f"kernel-{name}-{index}.json"))
            started = time.perf_counter()
            km.start_kernel(cwd=str(workdir))
            try:
                client = km.client()
                client.start_channels()
                try:
                    client.wait_for_ready(timeout=60)
                    ready = time.perf_counter()
                finally:
                    client.stop_channels()
            finally:
                km.shutdown_kernel(now=False)
            starts.append(ready - started)
            stops.append(time.perf_counter() - ready)
        figures[f"{name}_start_s"] = round(statistics.median(starts[1:]), 3)
        figures[f"{name}_shutdown_s"] = round(statistics.median(stops[1:]), 3)
    figures["samples"] = samples
    return figures


# --- submit-to-score latency through the portal ----------------------------------------


def portal_latency(tmp: Path, procs: Processes, samples: int) -> dict[str, Any]:
    """One ``academy worker`` (embedded queue, SQLite); seconds from submit+publish to a finished row."""
    from sqlalchemy import select

    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.models import Assignment, Track
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort, request_enrollment
    from academy.extensions import db
    from academy.grading.models import Submission
    from academy.grading.services import submit
    from academy.grading.storage import submission_store
    from academy.users.models import Role
    from academy.users.services import create_user

    data_dir = tmp / "portal"
    database_url = f"sqlite:///{tmp / 'portal.sqlite3'}"
    secret = "bench-" + "k" * 40
    app = create_app({"secret_key": secret, "database_url": database_url, "data_dir": data_dir,
                      "courses_dir": ROOT / "courses", "broker_url": None})
    with app.app_context():
        run_init()
        course_track = db.session.scalar(
            select(Assignment).where(Assignment.slug == PORTAL_ASSIGNMENT)).course.track_id
        track = db.session.get(Track, course_track)
        cohort = create_cohort(db.session, track, name="grading benchmark", starts_at=utcnow(),
                               ends_at=utcnow() + dt.timedelta(days=30), capacity=10, actor_id=None)
        user = create_user(db.session, "bench-learner@example.kr", "bench-pass-123", Role.learner)
        request_enrollment(db.session, cohort, user)
        db.session.commit()
        assignment_id, user_id = (db.session.scalar(select(Assignment.id).where(Assignment.slug == PORTAL_ASSIGNMENT)),
                                  user.id)
    data = PORTAL_NOTEBOOK.read_bytes()

    published: list[float] = []  # wall-clock time of each publish, to match the worker's log

    def submit_one() -> tuple[int, float]:
        from academy.users.models import User

        started = time.perf_counter()
        with app.app_context():
            submission, _job = submit(db.session, assignment=db.session.get(Assignment, assignment_id),
                                     user=db.session.get(User, user_id), files={PORTAL_NOTEBOOK.name: data},
                                     store=submission_store(data_dir))
            db.session.commit()  # sends the job's message
            submission_id = submission.id
        published.append(time.time())
        return submission_id, started

    def wait_finished(submission_id: int, timeout: float) -> tuple[float, str]:
        deadline = time.perf_counter() + timeout
        with app.app_context():
            while time.perf_counter() < deadline:
                status = db.session.scalar(select(Submission.status).where(Submission.id == submission_id))
                db.session.rollback()  # end the read transaction: see the worker's commits
                if status is not None and status.finished:
                    return time.perf_counter(), status.value
                time.sleep(POLL_SECONDS)
        raise RuntimeError(f"submission {submission_id} was not graded within {timeout:.0f} s; worker log:\n"
                           f"{_tail(log_path.read_text(errors='replace'), 30)}")

    env = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    env.update({"ACADEMY_DATABASE_URL": database_url, "ACADEMY_DATA_DIR": str(data_dir),
                "ACADEMY_COURSES_DIR": str(ROOT / "courses"), "ACADEMY_SECRET_KEY": secret,
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                "TMPDIR": str(tmp / "t")})
    log_path = tmp / "worker.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        worker = procs.start([*_academy(), "worker", "--concurrency", "1"], cwd=ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            while b"ready." not in log_path.read_bytes():
                if worker.poll() is not None or time.perf_counter() - started > 120:
                    raise RuntimeError(f"academy worker did not start:\n{_tail(log_path.read_text(errors='replace'))}")
                time.sleep(0.1)
            ready = time.perf_counter() - started
            submission_id, t0 = submit_one()
            t1, warm_status = wait_finished(submission_id, 180)
            warmup = t1 - t0
            latencies, statuses = [], []
            for _ in range(samples):
                time.sleep(1.0)  # idle between submissions
                submission_id, t0 = submit_one()
                t1, status = wait_finished(submission_id, 120)
                latencies.append(t1 - t0)
                statuses.append(status)
        finally:
            procs.stop(worker)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    # From the worker's log: when each grading task was received, and how long it ran.
    log_text = log_path.read_text(errors="replace")
    received = [dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() for stamp in re.findall(
        r"^\[([0-9-]+ [0-9:,]+): INFO/MainProcess\] Task academy\.grade\[[^\]]+\] received", log_text, re.M)]
    runtimes = [float(m) for m in re.findall(r"Task academy\.grade\[[^\]]+\] succeeded in ([0-9.]+)s", log_text)]
    delays = [round(r - p, 3) for r, p in zip(received[1:], published[1:], strict=False)]
    median = statistics.median(latencies)
    return {
        "task_runtime_median_s": round(statistics.median(runtimes[1:]), 3) if runtimes[1:] else None,
        "task_runtimes_s": [round(x, 3) for x in runtimes[1:]],
        "publish_to_received_s": delays,
        "worker_ready_s": round(ready, 3),
        "warmup_s": round(warmup, 3),
        "warmup_status": warm_status,
        "samples_s": [round(x, 3) for x in latencies],
        "statuses": statuses,
        "median_s": round(median, 3),
        "target_s": LATENCY_TARGET,
        "meets_target": median < LATENCY_TARGET,
    }


# --- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, procs: Processes, say: Any) -> dict[str, Any]:
    env = tool_env(tmp)
    cpu = os.cpu_count() or 1
    from academy.engine.grade import default_workers

    workers = args.workers or default_workers()
    load_before = loadavg()
    before = cpu_times()
    time.sleep(2.0)
    background = busy_since(before)  # what else this machine is doing: the figures are only as clean as this
    say(f"building the course and {args.submissions} submissions in {tmp} ...")
    courses = build_courses(tmp, args.submissions, procs, env)
    students = courses.students
    honest = [s for s in students if s.kind != "infinite loop"]
    loop_student = next(s for s in students if s.kind == "infinite loop")
    tools = ["ours"] + ([] if args.skip_baseline else ["nbgrader"])

    def grade(tool: str, course: Path, label: str, count: int) -> Batch:
        if tool == "ours":
            return grade_ours(course, label, count, args.workers, procs, env)
        return grade_nbgrader(course, label, count, procs, env)

    say("warm-up: one submission with each tool ...")
    warm = {tool: grade(tool, courses.warmup, "warm-up", 1) for tool in tools}

    runs: dict[str, dict[str, list[Batch]]] = {tool: {"no_loop": [], "with_loop": []} for tool in tools}
    for repetition in range(args.repeat):
        for label, course, count in (("no_loop", courses.no_loop, len(honest)),
                                     ("with_loop", courses.with_loop, len(students))):
            for tool in tools:
                what = f"academy grade --all ({workers} workers)" if tool == "ours" else "nbgrader autograde"
                say(f"[{repetition + 1}/{args.repeat}] {what}: {label}, {count} submissions ...")
                runs[tool][label].append(grade(tool, course, label, count))
    # The median run of each batch stands for it; every run's scores are checked.
    median = {tool: {label: _median_batch(batches) for label, batches in by_label.items()}
              for tool, by_label in runs.items()}
    ours, nbg = median["ours"], median.get("nbgrader")

    say("kernel start cost (grade_submission timings, bare kernel starts) ...")
    kernel = kernel_start_share(courses, tmp, samples=max(1, min(6, len(honest) - 1)))
    kernel["bare"] = bare_kernel_starts(tmp, samples=4)

    latency = None
    if not args.skip_portal:
        say("submit-to-score latency through academy worker ...")
        latency = portal_latency(tmp, procs, LATENCY_SAMPLES)

    def batch_json(tool: str, label: str) -> dict[str, Any]:
        data = median[tool][label].to_json()
        data["runs_s"] = [round(b.seconds, 3) for b in runs[tool][label]]
        return data

    report: dict[str, Any] = {
        "benchmark": "grading",
        "submissions": len(students),
        "honest_submissions": len(honest),
        "exercises": len(EXERCISES),
        "max_score": MAX_SCORE,
        "cell_timeout_s": CELL_TIMEOUT,
        "cpus": cpu,
        "workers": workers,
        "repeat": args.repeat,
        "ours_command": "academy grade --all --json" + (f" --workers {args.workers}" if args.workers else ""),
        "ours_sandboxed": kernel["sandboxed"],
        "baseline_command": None if args.skip_baseline else "nbgrader autograde --force",
        "baseline_kernel": None if args.skip_baseline else
        f"lab environment ({LAB_PYTHON}) through a python3 kernelspec in a private JUPYTER_PATH, unsandboxed",
        "nbgrader_version": _nbgrader_version(),
        "warmup_one_submission_s": {tool: round(b.seconds, 3) for tool, b in warm.items()},
        "ours": {label: batch_json("ours", label) for label in ours},
        "nbgrader": {label: batch_json("nbgrader", label) for label in nbg} if nbg else None,
    }
    if nbg:
        report["ratio_no_loop"] = round(ours["no_loop"].per_minute / nbg["no_loop"].per_minute, 3)
        report["ratio_with_loop"] = round(ours["with_loop"].per_minute / nbg["with_loop"].per_minute, 3)
        # The machine's speed drifts between runs; each repetition's two runs ran minutes apart.
        report["ratio_no_loop_per_run"] = [round(n.seconds / o.seconds, 3) for o, n in
                                           zip(runs["ours"]["no_loop"], runs["nbgrader"]["no_loop"], strict=True)]
        report["throughput_target_ratio"] = THROUGHPUT_TARGET
        report["meets_throughput_target"] = report["ratio_no_loop"] >= THROUGHPUT_TARGET
    report["loop_check"] = {}
    for tool, batches in median.items():
        with_loop, no_loop = batches["with_loop"].seconds, batches["no_loop"].seconds
        report["loop_check"][tool] = {"with_loop_s": round(with_loop, 3), "no_loop_s": round(no_loop, 3),
                                      "limit_s": round(no_loop + CELL_TIMEOUT, 3),
                                      "extra_s": round(with_loop - no_loop, 3),
                                      "holds": with_loop <= no_loop + CELL_TIMEOUT}

    everything = {tool: [b for batches in by_label.values() for b in batches] for tool, by_label in runs.items()}
    scores: dict[str, Any] = {
        "compared": len(honest),
        "ours_vs_expected": sorted({sid for b in everything["ours"] for sid in wrong_against_expected(b, honest)}),
        "ours_statuses": _count(ours["no_loop"].statuses.values()),
    }
    if nbg:
        pairs = [(o, n) for label in ("no_loop", "with_loop")
                 for o, n in zip(runs["ours"][label], runs["nbgrader"][label], strict=True)]
        scores["mismatches"] = sorted({sid for o, n in pairs for sid in compare(o, n, honest)})
        scores["nbgrader_vs_expected"] = sorted({sid for b in everything["nbgrader"]
                                                 for sid in wrong_against_expected(b, honest)})
    scores["mismatch_count"] = len(scores.get("mismatches", []))
    scores["expected_score_mean"] = round(statistics.fmean(s.expected_score for s in honest), 3)
    scores["kinds"] = _count(s.kind for s in students)
    scores["loop_student"] = loop_student.id
    scores["loop_expected_score"] = loop_student.expected_score
    scores["loop"] = {tool: {"score": _total(batches["with_loop"].scores.get(loop_student.id)),
                             "status": batches["with_loop"].statuses.get(loop_student.id),
                             "problems": batches["with_loop"].problems.get(loop_student.id, [])}
                      for tool, batches in median.items()}
    report["scores"] = scores
    report["kernel_start"] = kernel
    report["portal_latency"] = latency
    report["loadavg_before"], report["loadavg_after"] = load_before, loadavg()
    report["background_cpu_busy"] = None if background is None else round(background, 3)
    return report


def _median_batch(batches: list[Batch]) -> Batch:
    return sorted(batches, key=lambda b: b.seconds)[(len(batches) - 1) // 2]


def _nbgrader_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nbgrader")
    except Exception:  # noqa: BLE001 - informative only
        return None


def _total(cells: dict[str, float | None] | None) -> float | None:
    if cells is None:
        return None
    return float(sum(v for v in cells.values() if v is not None))


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(report: dict[str, Any]) -> str:
    """The readable summary."""
    out = []
    ours, nbg = report["ours"], report["nbgrader"]
    out.append(f"Grading benchmark: {report['submissions']} submissions ({report['honest_submissions']} honest + 1 "
               f"infinite loop), {report['exercises']} exercises, cell timeout {report['cell_timeout_s']} s, "
               f"{report['cpus']} CPUs, median of {report['repeat']} run(s)")
    kernels = "sandboxed kernels" if report["ours_sandboxed"] else "UNSANDBOXED kernels"
    out.append(f"ours:     {report['ours_command']} (workers: {report['workers']}, {kernels})")
    if nbg:
        out.append(f"baseline: {report['baseline_command']} (nbgrader {report['nbgrader_version']}, serial; kernel: "
                   f"{report['baseline_kernel']})")
    out.append("")
    out.append(f"{'batch':<22} {'tool':<9} {'n':>3} {'seconds':>8} {'sub/min':>8} {'s/sub':>6} {'1st result':>10} "
               f"{'steady/min':>10} {'CPU busy':>8}")
    for label in ("no_loop", "with_loop"):
        for tool, data in (("ours", ours), ("nbgrader", nbg)):
            if data and label in data:
                row = data[label]
                out.append(f"{label:<22} {tool:<9} {row['submissions']:>3} {row['seconds']:>8.2f} "
                           f"{row['per_minute']:>8.1f} {row['seconds_per_submission']:>6.2f} "
                           f"{_fmt(row.get('first_result_s'), '.2f'):>10} "
                           f"{_fmt(row.get('steady_per_minute'), '.1f'):>10} "
                           f"{_fmt(row.get('machine_cpu_busy'), '.0%'):>8}")
    for tool, seconds in report["warmup_one_submission_s"].items():
        out.append(f"{'warm-up (1 submission)':<22} {tool:<9} {1:>3} {seconds:>8.2f}")
    out.append("")
    if nbg:
        target = "meets" if report["meets_throughput_target"] else "below"
        out.append(f"throughput ours/nbgrader, no loop: {report['ratio_no_loop']:.2f}x "
                   f"({target} the {THROUGHPUT_TARGET:g}x target); with loop: {report['ratio_with_loop']:.2f}x")
        if len(report["ratio_no_loop_per_run"]) > 1:
            pairs = ", ".join(f"{ratio:.2f}x" for ratio in report["ratio_no_loop_per_run"])
            out.append(f"  no loop, each repetition's pair of runs: {pairs}")
    for tool, check in report["loop_check"].items():
        out.append(f"loop check ({tool}): with loop {check['with_loop_s']:.2f} s <= no loop {check['no_loop_s']:.2f} s "
                   f"+ timeout {report['cell_timeout_s']} s = {check['limit_s']:.2f} s: "
                   f"{'holds' if check['holds'] else 'DOES NOT HOLD'} (loop batch {check['extra_s']:+.2f} s)")
    scores = report["scores"]
    if nbg:
        listed = f" {scores['mismatches']}" if scores["mismatches"] else ""
        out.append(f"score mismatches ours vs nbgrader (honest submissions, per cell, every run): "
                   f"{scores['mismatch_count']} of {scores['compared']}{listed}")
        out.append(f"graded differently from the expected scores: ours {len(scores['ours_vs_expected'])}, "
                   f"nbgrader {len(scores['nbgrader_vs_expected'])}")
    else:
        out.append(f"graded differently from the expected scores: ours {len(scores['ours_vs_expected'])} of "
                   f"{scores['compared']}")
    for tool, loop in scores["loop"].items():
        out.append(f"loop submission {scores['loop_student']} ({tool}): score {_fmt(loop['score'], 'g')} of "
                   f"{report['max_score']:g} (expected {scores['loop_expected_score']:g}), status {loop['status']}")
    kernel = report["kernel_start"]
    bare = kernel["bare"]
    out.append("")
    out.append(f"one submission in a warm process (grade_submission with feedback, mean of {kernel['samples']}): "
               f"{kernel['total_s']:.3f} s")
    out.append(f"  kernel start {kernel['kernel_start_s']:.3f} s ({_fmt(kernel['kernel_start_share'], '.0%')} of it), "
               f"cells + kernel shutdown {kernel['execution_s']:.3f} s, feedback {kernel['feedback_s']:.3f} s; "
               f"first job in a fresh process {kernel['first_job_total_s']:.2f} s")
    out.append("  every stage (mean s): " + ", ".join(f"{key} {value:.3f}" for key, value
                                                    in kernel["timings_mean_s"].items() if key != "total"))
    out.append(f"  bare lab kernel start+ready: sandboxed {_fmt(bare['sandboxed_start_s'], '.3f')} s, plain "
               f"{bare['plain_start_s']:.3f} s; shutdown {_fmt(bare['sandboxed_shutdown_s'], '.3f')} s / "
               f"{bare['plain_shutdown_s']:.3f} s (median of {bare['samples']})")
    latency = report["portal_latency"]
    if latency:
        out.append(f"submit-to-score latency (academy worker, idle, median of {len(latency['samples_s'])}): "
                   f"{latency['median_s']:.2f} s (target < {latency['target_s']:g} s: "
                   f"{'met' if latency['meets_target'] else 'NOT met'})")
        out.append(f"  samples {latency['samples_s']}; in the worker: publish to received "
                   f"{latency['publish_to_received_s']}, grading task {latency['task_runtimes_s']}; "
                   f"worker ready in {latency['worker_ready_s']:.1f} s, warm-up {latency['warmup_s']:.2f} s")
    out.append(f"machine CPU busy before the run (other work, 2 s): {_fmt(report['background_cpu_busy'], '.0%')}; "
               f"load average before/after: {report['loadavg_before']} / {report['loadavg_after']}")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=40,
                        help="submissions, one of them an infinite loop (default 40)")
    parser.add_argument("--workers", type=int, default=None, help="academy grade --all --workers (default: CPUs)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run plain nbgrader")
    parser.add_argument("--skip-portal", action="store_true", help="do not measure the latency through academy worker")
    parser.add_argument("--repeat", type=int, default=1, help="run each timed batch this many times, report the "
                        "median (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object, last line")
    args = parser.parse_args(argv)
    if args.submissions < 3:
        parser.error("--submissions must be at least 3")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


@contextlib.contextmanager
def _cleanup(procs: Processes) -> Iterator[Path]:
    tmp = _short_tempdir()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in previous:
        signal.signal(sig, interrupted)
    try:
        yield tmp
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not LAB_PYTHON.is_file():
        print(f"error: the lab interpreter {LAB_PYTHON} is missing (make lab-env)", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    procs = Processes()
    try:
        with _cleanup(procs) as tmp:
            report = run(args, tmp, procs, say)
    except KeyboardInterrupt:
        print("interrupted; every process and temporary file of the run was removed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(report), flush=True)
    if args.json:
        print(json.dumps(report, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
