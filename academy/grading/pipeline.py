"""Grade one submission with nbgrader, in a fresh working directory, from plain Python.

No Flask and no portal database: ``grade_submission`` takes a course directory (an
unmodified nbgrader course: ``nbgrader_config.py`` and ``source/<assignment>/``), the
learner's notebooks and returns a ``GradeResult``.  The worker, ``academy grade`` and the
tests all come through here.

How nbgrader is driven
    In-process, through nbgrader's converter classes (``GenerateAssignment``,
    ``Autograde``, ``GenerateFeedback``) with a ``traitlets.Config`` built per job: the
    course's ``nbgrader_config.py`` (timeouts, course id, stubs, ...; loaded alone, not
    merged with ``~/.jupyter`` files, so a grade does not depend on the machine) plus the
    job's paths.  Nothing global is mutated, but nbgrader ``chdir``\\s into the job while it
    converts, so run one job per process at a time (``academy grade --all`` uses a process
    pool; ``grade_in_subprocess`` runs one job in a fresh process).

Before nbgrader runs
    Each notebook is validated (``validation.load_notebook``: size, UTF-8, JSON depth,
    nbformat 4 schema, unique cell ids; failures raise ``UngradableInput``) and reconciled
    with the released version (``validation.reconcile_with_release``): nbgrader metadata is
    restored by ``grade_id``, foreign nbgrader cells lose theirs, duplicates keep it only
    on the last copy and deleted cells are put back.  Plain nbgrader 0.9.6 aborts the whole
    submission on a duplicated grade cell or on a pasted cell from another notebook; here
    those become ``problems`` and the rest is graded as nbgrader would.

Working directory
    Each job gets ``<work_root or $TMPDIR>/academy-grade-*/`` holding a copy of the
    gradebook, ``source/<assignment>/`` and ``submitted/<student>/<assignment>/``; nbgrader
    writes ``autograded/`` and ``feedback/`` there; the directory is removed afterwards.
    The course directory is only read.  The kernel's working directory is
    ``autograded/<student>/<assignment>/`` (nbclient passes it as ``cwd`` to the kernel
    manager), the one directory a sandbox binds for the learner.

Cache
    ``generate_assignment`` runs once per (assignment, content of the source tree,
    ``nbgrader_config.py``, header/footer, nbgrader version): its gradebook,
    source snapshot and release go to ``<cache>/<assignment>-<hash>/`` (built aside and
    renamed into place, so concurrent workers never see half an entry) and are copied into
    each job.  The cache holds answer keys: it is created mode 0700.

Kernels
    ``kernel_manager_class_for(policy)`` is the one place that picks the kernel manager:
    the sandbox's asyncio manager when ``academy.grading.sandbox`` provides one (fail
    closed: ``SandboxUnavailable`` becomes a grader error unless the policy allows
    unsandboxed runs), else
    ``LabKernelManager`` (unsandboxed: the lab environment's interpreter, a private
    runtime directory, IPC transport, an allow-listed environment).  Kernels never run
    with the portal's interpreter; ``ACADEMY_LAB_PYTHON`` overrides the interpreter.
    nbgrader's ``Execute`` preprocessor is replaced by ``GuardedExecute`` (through
    ``Autograde.autograde_preprocessors``), which honours
    ``ExecutePreprocessor.kernel_manager_class`` from the configuration (nbgrader's own
    ``Execute`` silently overrides it), turns a dead or unresponsive kernel into failed
    cells instead of a crashed job, caps output bytes per cell and enforces an optional
    deadline for the whole submission.

Tampering
    ``GuardedExecute`` runs every code cell through ``anticheat.NotebookDefence``: an
    integrity agent installed before the first cell checks and repairs the kernel before
    instructor cells and after tests, a must-fail canary precedes each test, and test
    outputs are repaired for scoring; learner cells get static checks before anything runs.
    Detected tampering zeroes the affected tests (status stays ``graded``, the cheat is the
    learner's) and adds ``flags`` for the instructor (docs/anticheat.md).  A course can turn
    the canary off with ``c.GuardedExecute.canary = False`` and everything with
    ``c.GuardedExecute.integrity_checks = False``.

Scores and statuses
    Per cell: nbgrader's autograde score for autograder tests.  Manually graded answers
    and tasks are listed with ``"score": null, "needs_manual_grading": true`` until a human
    grades them, unless nbgrader already scored them (an unchanged answer gets 0).  A
    notebook's and the submission's ``score`` add up the known points only;
    ``max_score`` counts every point, manual ones included.  ``status`` is ``graded``;
    ``learner_code_failed`` when a cell timed out, the kernel died or stopped answering,
    or the submission's time limit ran out (those cells and any not run get 0, the others
    keep their points); ``grader_error`` when nbgrader or this pipeline failed, which
    never reads as a score of 0 (``score`` is null).  ``flags`` are reasons for an instructor
    to review the submission (suspected tampering).  ``problems`` lists what was noticed:
    timeouts and kernel deaths (with the cell), changed, deleted or duplicated test cells,
    tampered metadata, truncated output, notebooks not submitted.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool, Float, Integer, List, Unicode
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader
from traitlets.utils.importstring import import_item

from academy.grading import anticheat
from academy.grading.results import CellResult, GradeResult, GradeStatus, NotebookResult
from academy.grading.validation import (
    MAX_NOTEBOOK_BYTES,
    UngradableInput,
    check_name,
    load_notebook,
    reconcile_with_release,
)

__all__ = [
    "GradeResult",
    "GraderSetupError",
    "UngradableInput",
    "grade_in_subprocess",
    "grade_submission",
    "kernel_manager_class_for",
    "lab_python",
    "release_notebooks",
]

LAB_PYTHON_ENV = "ACADEMY_LAB_PYTHON"
"""Environment variable naming the learners' interpreter (default: ``.venv-lab/bin/python``)."""

CACHE_DIR_ENV = "ACADEMY_GRADING_CACHE_DIR"
"""Environment variable naming the generate_assignment cache directory."""

MAX_OUTPUT_BYTES_PER_CELL = 2 * 1024 * 1024
"""Output kept per cell; the rest is dropped while it streams in (N14)."""

_CACHE_FORMAT = "1"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOGGER_NAME = "academy.grading.nbgrader"
_DEFAULT_IGNORE = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]


class GraderSetupError(RuntimeError):
    """The grader itself cannot run (no lab interpreter, nbgrader failed); a grader error."""


# --- public entry points -------------------------------------------------------------


def grade_submission(
    course_dir: Path,
    assignment: str,
    notebooks: Mapping[str, bytes] | Sequence[Path],
    *,
    student_id: str = "learner",
    feedback: bool = True,
    policy: Any = None,
    work_root: Path | None = None,
    cache_dir: Path | None = None,
    keep_workdir: bool = False,
) -> GradeResult:
    """Autograde ``notebooks`` against ``course_dir/source/<assignment>/``.

    ``notebooks`` is either ``{name: bytes}`` (name with or without ``.ipynb``) or a list
    of ``.ipynb`` paths.  ``policy`` is the sandbox policy (see ``kernel_manager_class_for``).
    Raises ``UngradableInput`` (one-line message, nothing run) for unusable input: a
    missing course or assignment, a notebook the assignment does not have, or bytes that
    are not a valid nbformat 4 notebook.  Every other failure is returned as a
    ``grader_error`` result, never raised.
    """
    started = time.monotonic()
    course = _load_course(Path(course_dir), assignment)
    check_name(student_id, "student id")
    submitted = _read_inputs(notebooks, course)
    cache_root = _cache_root(cache_dir, work_root)
    with _job_environment() as joblog:
        result = _run_job(course, assignment, submitted, student_id, feedback, policy, work_root, cache_root,
                          keep_workdir, joblog)
    result.student = student_id
    result.timings["total"] = round(time.monotonic() - started, 3)
    return result


def grade_in_subprocess(*args: Any, **kwargs: Any) -> GradeResult:
    """``grade_submission`` in a fresh child process (for callers with threads or a Flask app).

    nbgrader changes the working directory while it converts; a child process keeps that
    (and any state nbgrader or the kernel libraries leave behind) away from the caller.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(grade_submission, *args, **kwargs).result()


def release_notebooks(course_dir: Path, assignment: str, *, cache_dir: Path | None = None) -> dict[str, bytes]:
    """The student version of each notebook of the assignment (nbgrader's release), by name.

    Built by ``generate_assignment`` through the same cache the grader uses.  Raises
    ``UngradableInput`` for a missing course or assignment.
    """
    course = _load_course(Path(course_dir), assignment)
    with _job_environment() as joblog:
        entry = _cache_entry(course, assignment, _cache_root(cache_dir, None), joblog)
    release = entry / "release" / assignment
    return {path.stem: path.read_bytes() for path in sorted(release.glob("*.ipynb"))}


def lab_python(policy: Any = None) -> str:
    """The interpreter learners' kernels run with: ``$ACADEMY_LAB_PYTHON``, the policy's, or ``.venv-lab``.

    Raises ``GraderSetupError`` when it does not exist or is the portal's own interpreter.
    """
    candidate = os.environ.get(LAB_PYTHON_ENV) or getattr(policy, "python", None) or str(
        _REPO_ROOT / ".venv-lab" / "bin" / "python")
    path = Path(candidate)
    if not path.is_absolute() or not os.access(path, os.X_OK):
        raise GraderSetupError(f"the lab interpreter {candidate} is missing (make lab-env, or set {LAB_PYTHON_ENV})")
    if path.parent.parent.resolve() == Path(sys.prefix).resolve():
        raise GraderSetupError(f"{candidate} is the portal's interpreter; learners' kernels need the lab environment")
    return str(path)


def kernel_manager_class_for(policy: Any) -> type:
    """The kernel manager class that runs learners' code: the single switch for the sandbox.

    With ``academy.grading.sandbox`` present: ``require_isolation(policy)`` (fail closed:
    ``SandboxUnavailable`` unless the policy allows unsandboxed runs) and the sandbox's
    asyncio manager bound to ``policy``; its working directory is bound per kernel to the
    ``cwd`` nbclient starts it in (see ``_BindWorkdir``).  Without the sandbox module:
    ``LabKernelManager``, unsandboxed.
    """
    sandbox = _sandbox_module()
    if sandbox is None:
        return LabKernelManager
    policy = policy if policy is not None else sandbox.SandboxPolicy()
    sandbox.require_isolation(policy)
    return sandbox.kernel_manager_class(policy, "", asynchronous=True)


# --- course, inputs, cache -----------------------------------------------------------


@dataclass(frozen=True)
class _Course:
    root: Path
    config: Any  # traitlets Config from nbgrader_config.py, header/footer made absolute
    config_bytes: bytes
    source: Path  # <root>/<source_directory>/<assignment>
    notebook_names: tuple[str, ...]
    ignore: tuple[str, ...]


def _load_course(root: Path, assignment: str) -> _Course:
    check_name(assignment, "assignment")
    if not root.is_dir():
        raise UngradableInput(f"course directory {root} does not exist")
    root = root.resolve()
    config_file = root / "nbgrader_config.py"
    config, config_bytes = Config(), b""
    if config_file.is_file():
        config_bytes = config_file.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = PyFileConfigLoader(config_file.name, path=str(root),
                                            log=logging.getLogger(_LOGGER_NAME)).load_config()
        except Exception as exc:  # noqa: BLE001 - a broken course file is reported, not raised raw
            raise UngradableInput(f"{config_file}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    source_name = config.CourseDirectory.get("source_directory", "source") if "CourseDirectory" in config else "source"
    source = root / source_name / assignment
    if not source.is_dir():
        parent = root / source_name
        available = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        hint = f" (assignments: {', '.join(available[:10])})" if available else ""
        raise UngradableInput(f"assignment {assignment!r} not found under {root / source_name}{hint}")
    names = tuple(sorted(p.stem for p in source.glob("*.ipynb")))
    if not names:
        raise UngradableInput(f"assignment {assignment!r} has no notebooks in {source}")
    for option in ("header", "footer"):
        if "IncludeHeaderFooter" in config and config.IncludeHeaderFooter.get(option):
            path = Path(config.IncludeHeaderFooter[option])
            config.IncludeHeaderFooter[option] = str(path if path.is_absolute() else root / path)
    ignore = _DEFAULT_IGNORE
    if "CourseDirectory" in config and "ignore" in config.CourseDirectory:
        ignore = list(config.CourseDirectory.ignore)
    return _Course(root, config, config_bytes, source, names, tuple(ignore))


def _read_inputs(notebooks: Mapping[str, bytes] | Sequence[Path], course: _Course) -> dict[str, bytes]:
    """``{notebook name: bytes}``, each name one of the assignment's notebooks."""
    items: list[tuple[str, bytes]] = []
    if isinstance(notebooks, Mapping):
        for key, data in notebooks.items():
            items.append((key.removesuffix(".ipynb"), bytes(data)))
    else:
        for raw in notebooks:
            path = Path(raw)
            if not path.is_file():
                raise UngradableInput(f"{path}: not a file")
            if path.suffix != ".ipynb":
                raise UngradableInput(f"{path}: not a .ipynb notebook file")
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                raise UngradableInput(f"{path}: the file is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MB")
            try:
                items.append((path.stem, path.read_bytes()))
            except OSError as exc:
                raise UngradableInput(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not items:
        raise UngradableInput("no notebooks to grade")
    result: dict[str, bytes] = {}
    for name, data in items:
        if name not in course.notebook_names:
            raise UngradableInput(
                f"notebook {name!r} is not part of the assignment (expected: {', '.join(course.notebook_names)})")
        if name in result:
            raise UngradableInput(f"notebook {name!r} given twice")
        result[name] = data
    return result


def _cache_root(cache_dir: Path | None, work_root: Path | None) -> Path:
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get(CACHE_DIR_ENV):
        root = Path(os.environ[CACHE_DIR_ENV])
    elif work_root is not None:
        root = Path(work_root) / "cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = base / "ai-saemaul-academy" / "grading"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _source_key(course: _Course, assignment: str) -> str:
    import nbgrader

    digest = hashlib.sha256()
    # Content only, not the directory's path: copies of a course (releases) share entries.
    for part in (_CACHE_FORMAT, nbgrader.__version__, assignment):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(course.config_bytes).digest())
    for option in ("header", "footer"):
        if "IncludeHeaderFooter" in course.config and course.config.IncludeHeaderFooter.get(option):
            path = Path(course.config.IncludeHeaderFooter[option])
            digest.update(hashlib.sha256(path.read_bytes() if path.is_file() else b"missing").digest())
    for path in sorted(_source_files(course)):
        digest.update(str(path.relative_to(course.source)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _source_files(course: _Course) -> Iterator[Path]:
    import fnmatch

    for dirpath, dirnames, filenames in os.walk(course.source):
        dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, pat) for pat in course.ignore)]
        for filename in filenames:
            if not any(fnmatch.fnmatch(filename, pat) for pat in course.ignore):
                yield Path(dirpath) / filename


def _cache_entry(course: _Course, assignment: str, cache_root: Path, joblog: _JobLog) -> Path:
    """The cached generate_assignment output for this source, built if missing."""
    entry = cache_root / f"{assignment}-{_source_key(course, assignment)[:32]}"
    if (entry / "ok").is_file():
        joblog.timings["generate_assignment"] = 0.0
        return entry
    started = time.monotonic()
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_root))
    try:
        shutil.copytree(course.source, build / "source" / assignment, ignore=shutil.ignore_patterns(*course.ignore))
        config = _job_config(course, build, assignment, ".")
        coursedir = CourseDirectory(config=config, log=joblog.logger)
        converter = GenerateAssignment(coursedir=coursedir, config=config, log=joblog.logger)
        converter.force = True
        converter.create_assignment = True
        converter.start()
        (build / "ok").write_text(course.root.as_posix() + "\n")
        try:
            os.rename(build, entry)
        except OSError:
            if not (entry / "ok").is_file():  # not a concurrent builder that won the race
                raise
    except Exception as exc:
        cause = _root_cause(joblog) or _one_line(exc)
        raise GraderSetupError(f"generate_assignment failed for {assignment!r}: {cause}") from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)
    joblog.timings["generate_assignment"] = round(time.monotonic() - started, 3)
    return entry


def _job_config(course: _Course, root: Path, assignment: str, student: str) -> Any:
    """The course's configuration with every path pointed into ``root``."""
    config = copy.deepcopy(course.config)
    coursedir = config.CourseDirectory
    coursedir.root = str(root)
    coursedir.db_url = f"sqlite:///{root / 'gradebook.db'}"
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    coursedir.notebook_id = "*"
    coursedir.directory_structure = os.path.join("{nbgrader_step}", "{student_id}", "{assignment_id}")
    for step in ("source", "release", "submitted", "autograded", "feedback", "solution", "source_with_tests"):
        coursedir[f"{step}_directory"] = step
    return config


# --- one job -------------------------------------------------------------------------


class _JobLog(logging.Handler):
    """Collects nbgrader's log lines and the structured notes ``GuardedExecute`` leaves."""

    MAX_LINES = 2000

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        self.lines: list[str] = []
        self.problems: list[str] = []
        self.flags: list[str] = []
        self.learner_failed = False
        self.timings: dict[str, float] = {}
        self.logger = logging.getLogger(_LOGGER_NAME)

    def emit(self, record: logging.LogRecord) -> None:
        flag = getattr(record, "academy_flag", None)
        if flag and flag not in self.flags:
            self.flags.append(flag)
        problem = getattr(record, "academy_problem", None)
        if problem:
            if problem not in self.problems:
                self.problems.append(problem)
            self.learner_failed = self.learner_failed or bool(getattr(record, "academy_learner_failed", False))
        timing = getattr(record, "academy_timing", None)
        if timing:
            name, seconds = timing
            self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
            return
        if len(self.lines) < self.MAX_LINES:
            try:
                self.lines.append(self.format(record))
            except Exception:  # noqa: BLE001 - a bad log call must not fail the job
                self.lines.append(str(record.msg))


@contextlib.contextmanager
def _job_environment() -> Iterator[_JobLog]:
    """Logging into a ``_JobLog``, warnings kept off stderr, nbgrader's tools on PATH.

    Besides nbgrader's converters (our logger), kernel managers and nbformat log to the
    ``traitlets`` logger and the sandbox to its own; all of it goes to the job's log.
    """
    joblog = _JobLog()
    loggers = [joblog.logger, logging.getLogger("traitlets"), logging.getLogger("academy.grading.sandbox")]
    saved = [(logger.level, logger.propagate, list(logger.handlers)) for logger in loggers]
    for logger in loggers:
        logger.handlers = [joblog]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # nbgrader runs `alembic` by name when it creates a gradebook.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield joblog
        for warning in caught[:50]:
            joblog.lines.append(f"[WARNING] {warning.category.__name__}: {warning.message}")
    finally:
        for logger, (level, propagate, handlers) in zip(loggers, saved, strict=True):
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers = handlers


def _run_job(course: _Course, assignment: str, submitted: dict[str, bytes], student: str, feedback: bool,
             policy: Any, work_root: Path | None, cache_root: Path, keep_workdir: bool,
             joblog: _JobLog) -> GradeResult:
    """Validate, then run nbgrader in a fresh directory; nbgrader failures become grader errors."""
    started = time.monotonic()
    prepared: dict[str, Any] = {name: load_notebook(data, f"{name}.ipynb") for name, data in submitted.items()}
    try:
        entry = _cache_entry(course, assignment, cache_root, joblog)
    except GraderSetupError as exc:
        return _grader_error(str(exc), joblog)
    releases = {name: nbformat.read(entry / "release" / assignment / f"{name}.ipynb", as_version=4)
                for name in course.notebook_names}
    problems: list[str] = []
    flags: list[str] = []
    for name, nb in prepared.items():
        problems.extend(reconcile_with_release(nb, releases[name], name))
        flags.extend(anticheat.static_findings(nb, name))
    problems.extend(f"{name}: not submitted (0 points)" for name in course.notebook_names if name not in prepared)
    joblog.timings["prepare"] = round(time.monotonic() - started, 3)

    if work_root is not None:
        Path(work_root).mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="academy-grade-", dir=work_root))
    try:
        shutil.copy2(entry / "gradebook.db", job / "gradebook.db")
        shutil.copytree(entry / "source", job / "source")
        target = job / "submitted" / student / assignment
        target.mkdir(parents=True)
        for name, nb in prepared.items():
            (target / f"{name}.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
        try:
            policy = _resolve_policy(policy)
            workdir = job / "autograded" / student / assignment
            kernel_manager, sandboxed = _kernel_manager(policy, job, workdir)
            _autograde(course, job, assignment, student, kernel_manager, policy, joblog)
            if feedback:
                _generate_feedback(course, job, assignment, student, joblog)
            result = _read_results(course, job, assignment, student, releases, feedback, joblog)
        except Exception as exc:  # noqa: BLE001 - whatever broke, it was not the learner's score
            joblog.lines.append(traceback.format_exc())
            failed = _grader_error(_root_cause(joblog) or _one_line(exc), joblog)
            failed.flags = _unique(flags + joblog.flags)
            return failed
        noticed = problems + [p for p in joblog.problems if p not in problems]
        result.flags = _unique(flags + joblog.flags)
        result.problems = noticed + [p for p in result.problems if p not in noticed]
        result.sandboxed = sandboxed
        if joblog.learner_failed:
            result.status = GradeStatus.learner_code_failed
        result.log = joblog.lines
        result.timings.update(joblog.timings)
        return result
    finally:
        if not keep_workdir:
            shutil.rmtree(job, ignore_errors=True)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _grader_error(message: str, joblog: _JobLog) -> GradeResult:
    return GradeResult(GradeStatus.grader_error, problems=[f"grader error: {message}"], log=joblog.lines,
                       timings=dict(joblog.timings))


def _root_cause(joblog: _JobLog) -> str | None:
    """The last line of the first traceback nbgrader logged (its own exception only says "see above")."""
    for line in joblog.lines:
        if "Traceback (most recent call last)" in line:
            tail = [part for part in line.strip().splitlines() if part.strip()]
            return tail[-1].strip()[:300] if tail else None
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _resolve_policy(policy: Any) -> Any:
    """The sandbox policy to use (the sandbox's default when None), with nbgrader's NBGRADER_EXECUTION."""
    sandbox = _sandbox_module()
    if policy is None and sandbox is not None:
        policy = sandbox.SandboxPolicy()
    if policy is not None and hasattr(policy, "extra_env") and dataclasses.is_dataclass(policy):
        # nbgrader sets NBGRADER_EXECUTION=autograde while it executes; notebooks may test it.
        policy = dataclasses.replace(policy, extra_env=(*policy.extra_env, ("NBGRADER_EXECUTION", "autograde")))
    return policy


def _kernel_manager(policy: Any, job: Path, workdir: Path) -> tuple[type, bool]:
    """The hook's kernel manager class, bound to this job's working directory; and whether it is sandboxed."""
    base = kernel_manager_class_for(policy)
    attrs: dict[str, Any] = {"expected_workdir": str(workdir), "__module__": __name__}
    if issubclass(base, LabKernelManager):
        attrs.update(lab_python=lab_python(policy), kernel_log=str(job / "kernel.log"))
        sandboxed = False
    else:
        sandboxed = bool(_sandbox_module().probe_isolation(policy).sandbox_available)
    return type(f"Job{base.__name__}", (_BindWorkdir, base), attrs), sandboxed


def _autograde(course: _Course, job: Path, assignment: str, student: str, kernel_manager: type, policy: Any,
               joblog: _JobLog) -> None:
    """nbgrader's Autograde with GuardedExecute and the chosen kernel manager.

    Limits: the course's ``nbgrader_config.py`` wins (``ExecutePreprocessor.timeout`` and
    friends); where it says nothing, the policy's ``cell_timeout``, ``startup_timeout`` and
    ``output_bytes`` apply; ``notebook_timeout`` bounds the whole submission.
    """
    config = _job_config(course, job, assignment, student)
    config.ExecutePreprocessor.kernel_manager_class = kernel_manager
    preprocessors = (config.Autograde.get("autograde_preprocessors")
                     or Autograde.class_traits()["autograde_preprocessors"].default())
    config.Autograde.autograde_preprocessors = [_guarded(pp) for pp in preprocessors]
    for option, attribute in (("timeout", "cell_timeout"), ("startup_timeout", "startup_timeout")):
        value = getattr(policy, attribute, None)
        if value and not _configured(config, option):
            config.ExecutePreprocessor[option] = math.ceil(value)
    if getattr(policy, "output_bytes", None) and "max_output_bytes" not in config.GuardedExecute:
        config.GuardedExecute.max_output_bytes = int(policy.output_bytes)
    config.GuardedExecute.source_dir = str(job / "source" / assignment)
    config.GuardedExecute.source_ignore = list(course.ignore)
    started = time.monotonic()
    if getattr(policy, "notebook_timeout", None):
        config.GuardedExecute.job_deadline = started + float(policy.notebook_timeout)
    coursedir = CourseDirectory(config=config, log=joblog.logger)
    converter = Autograde(coursedir=coursedir, config=config, log=joblog.logger)
    converter.force = True
    converter.create_student = True
    converter.start()
    joblog.timings["autograde"] = round(time.monotonic() - started, 3)


def _configured(config: Any, option: str) -> bool:
    """Whether the course configured ``option`` for nbgrader's Execute preprocessor."""
    return any(section in config and option in config[section]
               for section in ("NotebookClient", "ExecutePreprocessor", "Execute", "GuardedExecute"))


def _generate_feedback(course: _Course, job: Path, assignment: str, student: str, joblog: _JobLog) -> None:
    started = time.monotonic()
    config = _job_config(course, job, assignment, student)
    coursedir = CourseDirectory(config=config, log=joblog.logger)
    converter = GenerateFeedback(coursedir=coursedir, config=config, log=joblog.logger)
    converter.force = True
    converter.start()
    joblog.timings["feedback"] = round(time.monotonic() - started, 3)


def _read_results(course: _Course, job: Path, assignment: str, student: str, releases: dict[str, Any],
                  feedback: bool, joblog: _JobLog) -> GradeResult:
    """Per-cell scores from the job's gradebook, error lines from the autograded notebooks."""
    started = time.monotonic()
    autograded_dir = job / "autograded" / student / assignment
    course_id = _job_config(course, job, assignment, student).CourseDirectory.get("course_id", "")
    notebooks: list[NotebookResult] = []
    truncated: list[str] = []
    with Gradebook(f"sqlite:///{job / 'gradebook.db'}", course_id) as gradebook:
        submission = gradebook.find_submission(assignment, student)
        by_name = {nb.name: nb for nb in submission.notebooks}
        for name in course.notebook_names:
            if name not in by_name:
                raise GraderSetupError(f"the gradebook has no notebook {name!r}")
            path = autograded_dir / f"{name}.ipynb"
            executed = nbformat.read(path, as_version=4) if path.is_file() else None
            notebooks.append(_notebook_result(name, by_name[name].grades, releases[name], executed))
            if executed is not None:
                truncated.extend(_truncated_cells(name, executed))
    result = GradeResult(GradeStatus.graded, notebooks=notebooks, problems=truncated)
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
    tests = {cell.metadata.nbgrader["grade_id"] for cell in release.cells
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
                                    needs_manual_grading=manual is None))
            continue
        score = float(grade.manual_score if grade.manual_score is not None else grade.auto_score)
        error = None
        if grade.name in tests and score < max_score and grade.name in executed_cells:
            error = _error_text(executed_cells[grade.name])
        cells.append(CellResult(grade.name, score, max_score, error))
    return NotebookResult(name, cells)


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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_text(cell: Any) -> str | None:
    """The line that explains a failed test: the last error (``Name: value``) or the stderr text."""
    errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    if errors:
        error = errors[-1]
        ename, evalue = str(error.get("ename", "")), str(error.get("evalue", ""))
        if not evalue and error.get("traceback"):
            evalue = _ANSI.sub("", str(error["traceback"][-1])).strip()
            evalue = evalue.removeprefix(f"{ename}: ").removeprefix(ename).strip(": ")
        text = f"{ename}: {evalue}" if evalue else ename
    else:
        stderr = [out.get("text", "") for out in cell.get("outputs", [])
                  if out.get("output_type") == "stream" and out.get("name") == "stderr"]
        if not stderr:
            return None
        text = "stderr: " + " ".join("".join(stderr).split())
    text = _ANSI.sub("", text).strip()
    return text[:500] + ("…" if len(text) > 500 else "")


# --- kernels -------------------------------------------------------------------------


def _sandbox_module() -> Any:
    """``academy.grading.sandbox`` if it is there and offers what the hook needs, else None."""
    try:
        from academy.grading import sandbox
    except ImportError:
        return None
    needed = ("SandboxPolicy", "require_isolation", "probe_isolation", "kernel_manager_class")
    return sandbox if all(hasattr(sandbox, name) for name in needed) else None


class _BindWorkdir:
    """Mixin: the kernel runs in the directory nbclient gives it, which must be the submission's.

    nbclient starts the kernel with ``cwd=<autograded notebook's directory>``; that exact
    directory becomes the sandbox's only writable, learner-visible directory.
    """

    expected_workdir = ""

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        cwd = os.path.realpath(kw.get("cwd") or os.getcwd())
        if self.expected_workdir and cwd != os.path.realpath(self.expected_workdir):
            raise GraderSetupError(f"the kernel would start in {cwd}, not in the submission's directory")
        if hasattr(self, "workdir") and not self.workdir:
            self.workdir = cwd
        return await super()._async_pre_start_kernel(**kw)  # type: ignore[misc]


class LabKernelManager(AsyncKernelManager):
    """An unsandboxed kernel in the lab environment (development and tests only).

    Ignores the notebook's kernel name: always ``<lab python> -m ipykernel_launcher``.
    The kernel talks over IPC sockets in a private 0700 directory that also holds its
    connection file and an empty HOME; its environment is an allow-list (no portal
    secrets).  It is not isolated: it can read whatever the grader's user can.
    """

    lab_python = ""
    kernel_log = ""
    _private: str | None = None

    @property
    def kernel_spec(self) -> Any:
        return KernelSpec(argv=[self.lab_python or lab_python(), "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"], display_name="Python 3 (lab)", language="python",
                          interrupt_mode="signal", metadata={})

    @property
    def ipykernel(self) -> bool:
        return True

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        if self._private is None:
            self._private = tempfile.mkdtemp(prefix="acg-")
            os.mkdir(os.path.join(self._private, "home"))
            self.transport = "ipc"
            self.connection_file = os.path.join(self._private, "kernel.json")
            self.ip = os.path.join(self._private, "k")
        home = os.path.join(self._private, "home")
        env = {
            "PATH": os.pathsep.join([str(Path(self.lab_python or lab_python()).parent), "/usr/local/bin",
                                     "/usr/bin", "/bin"]),
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "Agg",
        }
        if os.environ.get("NBGRADER_EXECUTION"):  # nbgrader sets it while autograding
            env["NBGRADER_EXECUTION"] = os.environ["NBGRADER_EXECUTION"]
        kw["env"] = env
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if not self.kernel_log:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        # The kernel process's own output goes to the job's log file, not our stderr.
        with open(self.kernel_log, "ab") as log_file:
            kw["stdout"], kw["stderr"] = log_file, subprocess.STDOUT
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    cleanup_resources = _async_cleanup_resources


# --- execution guard -----------------------------------------------------------------


class GuardedExecute(Execute):
    """nbgrader's Execute, made safe against learners' code (see the module docstring)."""

    job_deadline = Float(None, allow_none=True,
                         help="time.monotonic() after which no cell starts and running ones stop").tag(config=True)
    max_output_bytes = Integer(MAX_OUTPUT_BYTES_PER_CELL, help="Output bytes kept per cell").tag(config=True)
    integrity_checks = Bool(True, help="Check and repair the kernel around instructor cells "
                            "(academy.grading.anticheat)").tag(config=True)
    canary = Bool(True, help="Run a must-fail canary of each test cell before it (needs integrity_checks)"
                  ).tag(config=True)
    source_dir = Unicode("", help="The assignment's source directory (instructor files, solution)").tag(config=True)
    source_ignore = List(Unicode(), help="Patterns of source files nbgrader does not copy").tag(config=True)

    _defence: Any = None

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        # nbgrader's Execute passes kernel_manager_class=AsyncKernelManager as a keyword,
        # which beats configuration; put the configured class back.
        for section in ("NotebookClient", "ExecutePreprocessor", "Execute", type(self).__name__):
            if section in self.config and "kernel_manager_class" in self.config[section]:
                self.kernel_manager_class = self.config[section]["kernel_manager_class"]
        self._halted: str | None = None

    # notes for the pipeline, carried by log records
    def _problem(self, text: str, *, learner_failed: bool) -> None:
        self.log.warning("%s", text, extra={"academy_problem": text, "academy_learner_failed": learner_failed})

    def _flag(self, text: str) -> None:
        self.log.warning("flag: %s", text, extra={"academy_flag": text})

    def _timing(self, name: str, seconds: float) -> None:
        self.log.info("timing %s %.3f", name, seconds, extra={"academy_timing": (name, seconds)})

    def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> Any:
        self._halted = None
        self._notebook = (resources or {}).get("nbgrader", {}).get("notebook", "notebook")
        self._defence = None
        if self.integrity_checks:
            path = (resources or {}).get("metadata", {}).get("path")
            self._defence = anticheat.NotebookDefence(
                self, self._notebook, workdir=Path(path) if path else None,
                source_dir=Path(self.source_dir) if self.source_dir else None, ignore=self.source_ignore,
                canary=self.canary, flag=self._flag, log=self.log.warning,
                problem=lambda text: self._problem(text, learner_failed=False))
        started = time.monotonic()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self._timing("kernel_and_execution", time.monotonic() - started)
            if self._defence is not None:
                guard = self._defence.guard
                self._timing("anticheat_probe", guard.timings["probe"] + guard.timings.get("install", 0.0))
                self._timing("anticheat_canary", guard.timings["canary"])

    def execute_cell(self, cell: Any, cell_index: int, execution_count: int | None = None,
                     store_history: bool = True) -> Any:
        # nbclient binds execute_cell to its own async_execute_cell; route it through ours.
        return run_sync(self.async_execute_cell)(cell, cell_index, execution_count, store_history)

    async def async_execute_cell(self, cell: Any, cell_index: int, execution_count: int | None = None,
                                 store_history: bool = True) -> Any:
        """nbclient's execution of one cell, wrapped in ``anticheat.NotebookDefence`` (canary, probe)."""
        def execute() -> Any:
            return super(GuardedExecute, self).async_execute_cell(cell, cell_index, execution_count, store_history)

        if self._defence is None or cell.cell_type != "code" or not cell.source.strip():
            return await execute()
        timeout = self._get_timeout(cell)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        try:
            return await self._defence.run(cell, repr(grade_id) if grade_id else f"cell {cell_index + 1}", execute,
                                           timeout)
        except anticheat.KernelTimeout as exc:  # the canary of a test ran out of time
            if not exc.interrupted:
                raise CellTimeoutError(f"the check of {self._label(cell, cell_index)} did not stop") from None
            self._timed_out = timeout
            cell.outputs = [new_output("error", ename="CellTimeoutError", evalue="the test ran out of time",
                                       traceback=[])]
            return cell

    def start_new_kernel(self, **kwargs: Any) -> None:
        started = time.monotonic()
        super().start_new_kernel(**kwargs)
        self._started_at = time.monotonic()
        self._timing("kernel_start", self._started_at - started)

    def start_new_kernel_client(self) -> Any:
        started = time.monotonic()
        client = super().start_new_kernel_client()
        self._timing("kernel_start", time.monotonic() - started)
        return client

    def _get_timeout(self, cell: Any) -> int | None:
        timeout = super()._get_timeout(cell)
        if self.job_deadline is None or cell is None:
            return timeout
        remaining = max(1, math.ceil(self.job_deadline - time.monotonic()))
        return remaining if timeout is None else min(timeout, remaining)

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
        self._timed_out = timeout
        return await super()._async_handle_timeout(timeout, cell)

    async def _kill_kernel(self) -> None:
        await ensure_async(self.km.shutdown_kernel(now=True))

    def _label(self, cell: Any, index: int) -> str:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"{self._notebook}: cell {grade_id!r}" if grade_id else f"{self._notebook}: cell {index + 1}"

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> Any:
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        label = self._label(cell, index)
        if self._halted is None and self.job_deadline is not None and time.monotonic() >= self.job_deadline:
            self._halted = "the time limit for the submission was reached"
            self._problem(f"time limit for the submission reached before {label}; later cells were not run",
                          learner_failed=True)
        if self._halted is not None:
            cell.outputs = [new_output("error", ename="NotRun", evalue=f"not run because {self._halted}", traceback=[])]
            cell.execution_count = None
            return cell, resources
        self._label_now, self._cell_bytes, self._cell_truncated, self._timed_out = label, 0, False, None
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            oom = getattr(self.km, "oom_killed", None)
            why = " (memory limit reached)" if callable(oom) and oom() else ""
            self._halted = f"the kernel died in {label}{why}"
            cell.outputs.append(new_output("error", ename="DeadKernelError", evalue=self._halted, traceback=[]))
            self._problem(f"kernel died in {label}{why}; later cells were not run", learner_failed=True)
        except CellTimeoutError:
            run_sync(self._kill_kernel)()
            self._halted = f"the kernel stopped answering in {label}"
            cell.outputs.append(new_output("error", ename="CellTimeoutError", evalue=self._halted, traceback=[]))
            self._problem(f"timeout: {label} did not stop when interrupted; the kernel was killed and later "
                          "cells were not run", learner_failed=True)
        else:
            if self._timed_out is not None:
                deadline_hit = self.job_deadline is not None and time.monotonic() >= self.job_deadline
                if deadline_hit:
                    self._halted = "the time limit for the submission was reached"
                    self._problem(f"time limit for the submission reached in {label}; later cells were not run",
                                  learner_failed=True)
                else:
                    self._problem(f"timeout: {label} ran longer than {self._timed_out} s", learner_failed=True)
        return cell, resources

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        self._cell_bytes = getattr(self, "_cell_bytes", 0) + _payload_size(msg.get("content"))
        if self._cell_bytes <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if not self._cell_truncated:
            self._cell_truncated = True
            outs.append(new_output("stream", name="stdout",
                                   text=f"\n... output truncated by the grader (over {self.max_output_bytes} bytes)\n"))
            self._problem(f"output truncated: {self._label_now}", learner_failed=False)
        content = msg.get("content", {})
        msg_type = msg.get("msg_type")
        if msg_type == "error":  # errors decide the grade: keep them, shortened
            small = {"ename": str(content.get("ename", ""))[:200], "evalue": str(content.get("evalue", ""))[:2000],
                     "traceback": [str(line)[:2000] for line in content.get("traceback", [])[-20:]]}
            return super().output(outs, {**msg, "content": small}, None, cell_index)
        stderr_kept = any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outs)
        if msg_type == "stream" and content.get("name") == "stderr" and not stderr_kept:  # stderr means 0 points
            outs.append(new_output("stream", name="stderr", text="... stderr output truncated by the grader\n"))
        if msg_type == "execute_result":  # may carry partial credit: keep the plain text
            text = str((content.get("data") or {}).get("text/plain", ""))[:1000]
            small = {**content, "data": {"text/plain": text}, "metadata": {}}
            return super().output(outs, {**msg, "content": small}, None, cell_index)
        return None


def _guarded(preprocessor: Any) -> Any:
    """``preprocessor`` with nbgrader's Execute swapped for ``GuardedExecute`` (subclasses kept)."""
    cls = import_item(preprocessor) if isinstance(preprocessor, str) else preprocessor
    guarded = GuardedExecute
    if not (isinstance(cls, type) and issubclass(cls, Execute)) or issubclass(cls, guarded):
        return preprocessor
    if cls is Execute:
        return guarded
    return type(f"Guarded{cls.__name__}", (guarded, cls), {"__module__": __name__})


def _payload_size(value: Any) -> int:
    """Characters of text in a message content (iteratively; content nests a few levels)."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return total
