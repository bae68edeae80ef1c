"""One grading job's log: nbgrader's lines and the structured notes the pipeline collects.

``GuardedExecute`` reports problems, flags for review and timings as log records with
``academy_*`` attributes; ``JobLog`` sorts them out while keeping the plain lines for the
result's ``log``.  ``job_environment`` routes every logger involved into one ``JobLog``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

LOGGER_NAME = "academy.grading.nbgrader"
"""The logger nbgrader's converters are given."""


class JobLog(logging.Handler):
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
        self.logger = logging.getLogger(LOGGER_NAME)

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
def job_environment() -> Iterator[JobLog]:
    """Logging into a ``JobLog``, warnings kept off stderr, nbgrader's tools on PATH.

    Besides nbgrader's converters (our logger), kernel managers and nbformat log to the
    ``traitlets`` logger and the sandbox to its own; all of it goes to the job's log.
    """
    joblog = JobLog()
    loggers = [joblog.logger, logging.getLogger("traitlets"), logging.getLogger("academy.engine.sandbox")]
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


def root_cause(joblog: JobLog) -> str | None:
    """The last line of the first traceback nbgrader logged (its own exception only says "see above")."""
    for line in joblog.lines:
        if "Traceback (most recent call last)" in line:
            tail = [part for part in line.strip().splitlines() if part.strip()]
            return tail[-1].strip()[:300] if tail else None
    return None


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (300 characters at most)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
