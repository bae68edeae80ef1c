"""``academy grade``: grade notebooks against an nbgrader course directory, without the portal.

Two forms (DESIGN.md, "Interfaces that must stay stable")::

    academy grade --course DIR --assignment NAME [--student ID] [--feedback OUTDIR] NOTEBOOK... [--json]
    academy grade --course DIR --assignment NAME --all [--workers N] [--json]

Both go through ``academy.engine.pipeline.grade_submission``, the same code the grading
worker runs, in the same sandbox.  The command needs neither the portal database nor an
application context and never writes into DIR.  Exit status: 0 when every submission was
graded (whatever the score, also when learner code failed), 2 with a one-line message on
standard error otherwise: the input cannot be graded, the grader failed (the JSON result on
standard output says ``grader_error``) or the run was interrupted.  Never 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

EXIT_GRADED, EXIT_UNGRADABLE = 0, 2

WORKERS_PER_CPU = 2
"""Default ``--all`` workers per CPU: a job waits on its kernel about half the time."""

FORKSERVER_PRELOAD = (
    "academy.engine.pipeline",
    "academy.engine.sandbox",
    # imported by the first job otherwise (nbgrader's gradebook, the anticheat's cell parsing)
    "sqlalchemy.dialects.sqlite",
    "IPython.core.inputtransformer2",
    # last: builds what each worker's first job built (validators, ORM mappings); with --feedback,
    # academy.engine.prewarm_feedback follows (feedback templates, the HTML exporter's patterns)
    "academy.engine.prewarm",
)


def run_grade(course_dir: Path | None, assignment: str | None, student: str, feedback_dir: Path | None,
              grade_all: bool, workers: int | None, as_json: bool, notebooks: tuple[Path, ...]) -> int:
    """Grade NOTEBOOK... (or every submission with --all) with nbgrader, in the grading sandbox; the exit status.

    The command's engine: ``academy.cli`` wires the options of ``academy grade`` to it.
    """
    signal.signal(signal.SIGTERM, _interrupted)  # like Ctrl-C: clean up (zygotes, job folders), exit 2
    try:
        if course_dir is None or not assignment:
            _fail("--course DIR and --assignment NAME are required")
        if grade_all and notebooks:
            _fail("give either NOTEBOOK... or --all, not both")
        if grade_all:
            code = _grade_all(course_dir, assignment, workers or default_workers(), as_json, feedback_dir)
        elif not notebooks:
            _fail("no NOTEBOOK given (or use --all)")
        else:
            code = _grade_one(course_dir, assignment, student, list(notebooks), as_json, feedback_dir)
    except click.exceptions.Exit as refused:
        code = refused.exit_code
    except KeyboardInterrupt:  # click would print "Aborted!" and exit 1
        click.echo("error: interrupted", err=True)
        code = EXIT_UNGRADABLE
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        click.echo(f"error: {type(exc).__name__}: {_first_line(exc)}", err=True)
        code = EXIT_UNGRADABLE
    sys.stdout.flush()
    return code


def _interrupted(signum: int, _frame: Any) -> None:
    """SIGTERM handler: raise ``KeyboardInterrupt`` so that ``finally`` blocks and exit handlers run."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


_signalled: list[int] = []  # --all: SIGTERM/SIGINT received (set by _note_signal, read by _wait)


def _note_signal(signum: int, _frame: Any) -> None:
    """``--all``: remember the signal; the main loop (``_wait``) stops the workers.

    Raising here could leave one of the pool's locks held and its shutdown hung.
    """
    _signalled.append(signum)


def _wait(future: Any, pool: Any) -> Any:
    """``future.result()``, but on SIGTERM/SIGINT stop the workers and raise ``KeyboardInterrupt``.

    Each worker leaves through ``_worker_stop``: its job's ``finally`` removes the job
    directory and its kernel zygote is stopped and its folder removed.
    """
    while not _signalled:
        with contextlib.suppress(TimeoutError):
            return future.result(timeout=0.2)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError, AssertionError):
            process.join(timeout=15)
    raise KeyboardInterrupt(signal.Signals(_signalled[0]).name)


def default_workers() -> int:
    """Parallel ``--all`` jobs when ``--workers`` is not given: ``WORKERS_PER_CPU`` per CPU this process may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return WORKERS_PER_CPU * (cpus or 1)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(EXIT_UNGRADABLE)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _grade_one(course_dir: Path, assignment: str, student: str, notebooks: list[Path], as_json: bool,
               feedback_dir: Path | None) -> int:
    from academy.engine.pipeline import UngradableInput, grade_submission

    try:
        result = grade_submission(course_dir, assignment, notebooks, student_id=student,
                                  feedback=feedback_dir is not None)
    except UngradableInput as exc:
        _fail(str(exc))
    if feedback_dir is not None:
        _write_feedback(feedback_dir, result.feedback)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        click.echo(_table(result.to_json()))
    if result.status.value == "grader_error":
        click.echo(f"error: {result.problems[0] if result.problems else 'grader error'}", err=True)
        return EXIT_UNGRADABLE
    return EXIT_GRADED


def _write_feedback(directory: Path, feedback: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, html in feedback.items():
        (directory / f"{name}.html").write_text(html, encoding="utf-8")


def _submissions(course_dir: Path, assignment: str) -> list[tuple[str, list[Path]]]:
    """``(student, notebooks)`` for every ``DIR/submitted/STUDENT/NAME/``, by student id."""
    submitted = course_dir / "submitted"
    if not submitted.is_dir():
        _fail(f"{submitted} does not exist")
    found = []
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        folder = student_dir / assignment
        if folder.is_dir():
            found.append((student_dir.name, sorted(folder.glob("*.ipynb"))))
    if not found:
        _fail(f"no submissions of {assignment!r} under {submitted}")
    return found


def _grade_all(course_dir: Path, assignment: str, workers: int, as_json: bool, feedback_dir: Path | None) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    codes = {EXIT_GRADED}
    # A fork server that has already imported the pipeline (seconds of imports) forks each worker:
    # workers start warm and still inherit nothing of this process's state.  This process never
    # imports the pipeline itself: the first worker checks the course meanwhile.
    context = multiprocessing.get_context("forkserver")
    preload = [*FORKSERVER_PRELOAD, "academy.engine.prewarm_feedback"] if feedback_dir else list(FORKSERVER_PRELOAD)
    context.set_forkserver_preload(preload)
    signal.signal(signal.SIGTERM, _note_signal)
    signal.signal(signal.SIGINT, _note_signal)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_started) as pool:
        # Check the course once, and build the generate_assignment cache before the jobs need it.
        problem, names = _wait(pool.submit(_check_course, course_dir, assignment), pool)
        if problem is not None:
            _fail(problem)
        jobs = [(student, *_skip_extra_notebooks(paths, names)) for student, paths in
                _submissions(course_dir, assignment)]
        futures = [pool.submit(_grade_student, course_dir, assignment, student, paths, feedback_dir is not None,
                               skipped)
                   for student, paths, skipped in jobs]
        for (student, _paths, _skipped), future in zip(jobs, futures, strict=True):
            try:
                data, feedback = _wait(future, pool)
            except BrokenProcessPool as exc:
                data, feedback = _error_record(student, "grader_error", f"grader error: worker died ({exc})"), {}
            if feedback_dir is not None and feedback:
                _write_feedback(feedback_dir / student, feedback)
            if data["status"] in ("ungradable", "grader_error"):
                click.echo(f"error: {student}: {data['problems'][0] if data['problems'] else data['status']}",
                           err=True)
                codes.add(EXIT_UNGRADABLE)
            click.echo(json.dumps(data, ensure_ascii=False) if as_json else _summary_line(data))
            sys.stdout.flush()
    return max(codes)


def _worker_started() -> None:
    """Each ``--all`` worker launches its kernel zygote as it starts (it imports meanwhile).

    SIGTERM (``_wait``) and SIGINT make the worker leave (``_worker_stop``).
    """
    from academy.engine.kernels import prestart_zygote

    signal.signal(signal.SIGTERM, _worker_stop)
    signal.signal(signal.SIGINT, _worker_stop)
    try:
        prestart_zygote()
    except SystemExit as stop:  # stopped while starting: the pool would log the exit as a traceback
        _leave(stop.code if isinstance(stop.code, int) else 1)


_stopping = False  # set in a worker by _worker_stop


def _worker_stop(signum: int, _frame: Any) -> None:
    """In a worker: unwind the running job (its ``finally`` blocks run), then leave.

    An idle worker leaves through multiprocessing's exit handlers (which stop its zygote);
    in a job, ``_grade_student`` catches the ``SystemExit`` (the pool would otherwise send it
    back as the job's result and wait for the next job) and calls ``_leave``.
    """
    global _stopping
    _stopping = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _leave(code: int) -> None:
    """Stop this worker's kernel zygotes (removing their folders) and exit at once."""
    from academy.engine.sandbox import zygote

    with contextlib.suppress(Exception):
        zygote.close_all()
    os._exit(code)


def _check_course(course_dir: Path, assignment: str) -> tuple[str | None, tuple[str, ...]]:
    """Run in a pool process: (None, the assignment's notebook names) when it can be graded (its
    release is built), else (why not, ())."""
    from academy.engine.pipeline import UngradableInput, release_notebooks

    try:
        names = tuple(release_notebooks(course_dir, assignment))
    except SystemExit as exc:  # _worker_stop
        _leave(exc.code if isinstance(exc.code, int) else EXIT_UNGRADABLE)
    except UngradableInput as exc:
        return str(exc), ()
    return None, names


def _skip_extra_notebooks(paths: list[Path], names: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """The submitted notebooks that are part of the assignment, and a problem for each other one.

    As ``nbgrader autograde`` does, a notebook the assignment does not have (``p1 copy.ipynb``
    beside ``p1.ipynb``) is ignored, not a reason to refuse the student's whole submission.
    """
    kept = [path for path in paths if path.stem in names]
    skipped = [f"{path.name}: not part of the assignment (expected: {', '.join(names)}); ignored"
               for path in paths if path.stem not in names]
    return kept, skipped


def _grade_student(course_dir: Path, assignment: str, student: str, paths: list[Path],
                   feedback: bool, skipped: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """One ``--all`` job, run in a pool process: (JSON object with "student", feedback HTML).

    ``skipped`` are the problems of the notebooks left out (``_skip_extra_notebooks``).
    """
    from academy.engine.pipeline import UngradableInput, grade_submission

    try:
        result = grade_submission(course_dir, assignment, paths, student_id=student, feedback=feedback)
    except SystemExit as exc:  # _worker_stop: the job's finally blocks have run
        _leave(exc.code if isinstance(exc.code, int) else EXIT_UNGRADABLE)
    except UngradableInput as exc:
        return _error_record(student, "ungradable", str(exc)), {}
    except Exception as exc:  # noqa: BLE001 - reported as this student's grader error
        return _error_record(student, "grader_error", f"grader error: {type(exc).__name__}: {_first_line(exc)}"), {}
    if _stopping:  # the signal came while the job was cleaning up and was swallowed there
        _leave(EXIT_UNGRADABLE)
    data = result.to_json(with_student=True)
    data["problems"] = [*data["problems"], *(skipped or [])]
    return data, result.feedback


def _error_record(student: str, status: str, message: str) -> dict[str, Any]:
    return {"student": student, "status": status, "score": None, "max_score": None, "notebooks": [],
            "problems": [message]}


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _table(data: dict[str, Any]) -> str:
    """A short human-readable report of one result."""
    lines = []
    for notebook in data["notebooks"]:
        lines.append(f"{notebook['name']:<40} {_points(notebook['score']):>6} / {_points(notebook['max_score'])}")
        for cell in notebook["cells"]:
            note = "needs manual grading" if cell.get("needs_manual_grading") else (cell["error"] or "")
            lines.append(f"  {cell['grade_id']:<38} {_points(cell['score']):>6} / {_points(cell['max_score']):<6} "
                         f"{note}".rstrip())
    lines.append(f"{'total':<40} {_points(data['score']):>6} / {_points(data['max_score']):<6} {data['status']}")
    lines.extend(f"  ! {problem}" for problem in data["problems"])
    lines.extend(f"  ? review: {flag}" for flag in data.get("flags", []))
    return "\n".join(lines)


def _summary_line(data: dict[str, Any]) -> str:
    problems = f"  ({len(data['problems'])} problems)" if data["problems"] else ""
    if data.get("flags"):
        problems += f"  ({len(data['flags'])} flags for review)"
    return (f"{data['student']:<24} {_points(data['score']):>6} / {_points(data['max_score']):<6} "
            f"{data['status']}{problems}")
