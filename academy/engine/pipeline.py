"""Grade one submission with nbgrader, in a fresh working directory, from plain Python.

No Flask and no portal database: ``grade_submission`` takes a course directory (an
unmodified nbgrader course: ``nbgrader_config.py`` and ``source/<assignment>/``), the
learner's notebooks and returns a ``GradeResult``.  The worker, ``academy grade`` and the
tests all come through here.  The parts live beside this module:

``course``
    the course directory, the submitted notebooks' names, the ``generate_assignment``
    cache and each job's nbgrader configuration;
``kernels``
    which kernel manager runs learners' code (the sandbox, fail closed);
``execute``
    ``GuardedExecute``, nbgrader's Execute preprocessor made safe (timeouts, dead
    kernels, output caps, the anticheat defences);
``scores``
    per-cell scores read back from the job's gradebook;
``joblog``
    the job's log, problems, flags and timings.

How nbgrader is driven
    In-process, through nbgrader's converter classes (``GenerateAssignment``,
    ``Autograde``, ``GenerateFeedback``) with a ``traitlets.Config`` built per job: the
    course's ``nbgrader_config.py`` (timeouts, course id, stubs, ...) plus the job's
    paths.  Nothing global is mutated, but nbgrader ``chdir``\\s into the job while it
    converts, so run one job per process at a time (``academy grade --all`` uses a process
    pool; ``grade_in_subprocess`` runs one job in a fresh process).

Before nbgrader runs
    Each notebook is validated (``validation.load_notebook``: size, UTF-8, JSON depth,
    nbformat 4 schema, unique cell ids; failures raise ``UngradableInput``) and reconciled
    with the released version (``validation.reconcile_with_release``): nbgrader metadata is
    restored by ``grade_id``, foreign nbgrader cells lose theirs, duplicates keep it only
    on the last copy and deleted cells are put back.  Plain nbgrader 0.9.6 aborts the whole
    submission on a duplicated grade cell or on a pasted cell from another notebook; here
    those become ``problems`` and the rest is graded as nbgrader would.  Learner cells get
    the anticheat's static checks.

Working directory
    Each job gets ``<work_root or $TMPDIR>/academy-grade-*/`` holding a copy of the
    gradebook, ``source/<assignment>/`` and ``submitted/<student>/<assignment>/``; nbgrader
    writes ``autograded/`` and ``feedback/`` there; the directory is removed afterwards.
    The course directory is only read.  The kernel's working directory is
    ``autograded/<student>/<assignment>/`` (nbclient passes it as ``cwd`` to the kernel
    manager), the one directory a sandbox binds for the learner.

Tampering
    Detected tampering zeroes the affected tests (status stays ``graded``, the cheat is the
    learner's) and adds ``flags`` for the instructor (docs/anticheat.md).

Scores and statuses
    A notebook's and the submission's ``score`` add up the known points only;
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

import math
import shutil
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.coursedir import CourseDirectory

from academy.engine import anticheat
from academy.engine.course import NbgraderCourse, cache_entry, cache_root, job_config, load_course, read_inputs
from academy.engine.execute import GuardedExecute, guarded
from academy.engine.joblog import JobLog, job_environment, one_line, root_cause
from academy.engine.kernels import (
    LabKernelManager,
    job_kernel_manager,
    kernel_manager_class_for,
    lab_python,
    resolve_policy,
)
from academy.engine.results import GradeResult, GraderSetupError, GradeStatus
from academy.engine.scores import read_results
from academy.engine.tuning import FeedbackExporter, replace_checks, shared_gradebook_engine, use_template_cache
from academy.engine.validation import UngradableInput, check_name, load_notebook, reconcile_with_release

__all__ = [
    "GradeResult",
    "GraderSetupError",
    "GuardedExecute",
    "LabKernelManager",
    "UngradableInput",
    "grade_in_subprocess",
    "grade_submission",
    "kernel_manager_class_for",
    "lab_python",
    "release_notebooks",
]


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
    course = load_course(Path(course_dir), assignment)
    check_name(student_id, "student id")
    submitted = read_inputs(notebooks, course)
    cache = cache_root(cache_dir, work_root)
    with job_environment() as joblog:
        result = _run_job(course, assignment, submitted, student_id, feedback, policy, work_root, cache,
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
    course = load_course(Path(course_dir), assignment)
    with job_environment() as joblog:
        entry = cache_entry(course, assignment, cache_root(cache_dir, None), joblog)
    release = entry / "release" / assignment
    return {path.stem: path.read_bytes() for path in sorted(release.glob("*.ipynb"))}


# --- one job ---------------------------------------------------------------------


def _run_job(course: NbgraderCourse, assignment: str, submitted: dict[str, bytes], student: str, feedback: bool,
             policy: Any, work_root: Path | None, cache: Path, keep_workdir: bool,
             joblog: JobLog) -> GradeResult:
    """Validate, then run nbgrader in a fresh directory; nbgrader failures become grader errors."""
    started = time.monotonic()
    prepared: dict[str, Any] = {name: load_notebook(data, f"{name}.ipynb") for name, data in submitted.items()}
    try:
        entry = cache_entry(course, assignment, cache, joblog)
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
            policy = resolve_policy(policy)
            workdir = job / "autograded" / student / assignment
            kernel_manager, sandboxed = job_kernel_manager(policy, job, workdir)
            with shared_gradebook_engine(job / "gradebook.db"):
                _autograde(course, job, assignment, student, kernel_manager, policy, joblog)
                if feedback:
                    use_template_cache(cache / "templates")
                    _generate_feedback(course, job, assignment, student, joblog)
                result = read_results(course, job, assignment, student, releases, feedback, joblog)
        except Exception as exc:  # noqa: BLE001 - whatever broke, it was not the learner's score
            joblog.lines.append(traceback.format_exc())
            failed = _grader_error(root_cause(joblog) or one_line(exc), joblog)
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


def _grader_error(message: str, joblog: JobLog) -> GradeResult:
    return GradeResult(GradeStatus.grader_error, problems=[f"grader error: {message}"], log=joblog.lines,
                       timings=dict(joblog.timings))


def _autograde(course: NbgraderCourse, job: Path, assignment: str, student: str, kernel_manager: type, policy: Any,
               joblog: JobLog) -> None:
    """nbgrader's Autograde with GuardedExecute and the chosen kernel manager.

    Limits: the course's ``nbgrader_config.py`` wins (``ExecutePreprocessor.timeout`` and
    friends); where it says nothing, the policy's ``cell_timeout``, ``startup_timeout`` and
    ``output_bytes`` apply; ``notebook_timeout`` bounds the whole submission.
    """
    config = job_config(course, job, assignment, student)
    config.ExecutePreprocessor.kernel_manager_class = kernel_manager
    traits = Autograde.class_traits()
    preprocessors = config.Autograde.get("autograde_preprocessors") or traits["autograde_preprocessors"].default()
    config.Autograde.autograde_preprocessors = replace_checks([guarded(pp) for pp in preprocessors])
    config.Autograde.sanitize_preprocessors = replace_checks(
        config.Autograde.get("sanitize_preprocessors") or traits["sanitize_preprocessors"].default())
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


def _generate_feedback(course: NbgraderCourse, job: Path, assignment: str, student: str, joblog: JobLog) -> None:
    started = time.monotonic()
    config = job_config(course, job, assignment, student)
    if "exporter_class" not in config.GenerateFeedback:
        config.GenerateFeedback.exporter_class = FeedbackExporter
    coursedir = CourseDirectory(config=config, log=joblog.logger)
    converter = GenerateFeedback(coursedir=coursedir, config=config, log=joblog.logger)
    converter.force = True
    converter.start()
    joblog.timings["feedback"] = round(time.monotonic() - started, 3)
