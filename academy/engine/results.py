"""What grading one submission produced, in the shape ``academy grade --json`` prints.

Plain dataclasses with no Flask and no database: the grading worker turns them into
rows, the command line into JSON (the shape is fixed by DESIGN.md, "Interfaces that
must stay stable").
"""

from __future__ import annotations

import enum
import html
import re
from dataclasses import dataclass, field
from typing import Any


class GraderSetupError(RuntimeError):
    """The grader itself cannot run (no lab interpreter, nbgrader failed); a grader error, never a score."""


class GradeStatus(enum.Enum):
    """How grading ended.  The values match ``SubmissionStatus`` in ``grading.models``."""

    graded = "graded"
    learner_code_failed = "learner_code_failed"  # timeout, dead kernel, limit hit: affected cells got 0
    grader_error = "grader_error"  # nbgrader or the pipeline failed: there is no score


@dataclass
class CellResult:
    """One nbgrader grade cell (an autograder test, a manually graded answer or a task).

    ``score`` is None while the cell waits for a human (``needs_manual_grading``).
    ``error`` is the error line of a failing autograder test, otherwise None.

    ``test`` marks an autograder test; only tests carry the result of their *visible* part
    (what the released notebook holds, hidden tests removed; see ``academy.engine.execute``):
    ``visible_passed`` True, False, or None when it is unknown (the notebook did not run, or
    every test of the cell is hidden), and ``visible_error`` its error line when it failed.
    Both reveal nothing of the hidden tests, so they can be shown before the deadline.
    """

    grade_id: str
    score: float | None
    max_score: float
    error: str | None = None
    needs_manual_grading: bool = False
    test: bool = False
    visible_passed: bool | None = None
    visible_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md cell object; ``needs_manual_grading`` is added only when true, ``visible_*`` for tests."""
        data: dict[str, Any] = {
            "grade_id": self.grade_id,
            "score": self.score,
            "max_score": self.max_score,
            "error": self.error,
        }
        if self.needs_manual_grading:
            data["needs_manual_grading"] = True
        if self.test:
            data["visible_passed"] = self.visible_passed
            data["visible_error"] = self.visible_error
        return data


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_line(outputs: Any) -> str | None:
    """The line that explains a failed test from a cell's outputs: the last error (``Name: value``) or stderr.

    ANSI colours are stripped and the line is cut at 500 characters; None when the outputs
    hold neither an error nor stderr text.
    """
    outputs = list(outputs or [])
    errors = [out for out in outputs if out.get("output_type") == "error"]
    if errors:
        error = errors[-1]
        ename, evalue = str(error.get("ename", "")), str(error.get("evalue", ""))
        if not evalue and error.get("traceback"):
            evalue = _ANSI.sub("", str(error["traceback"][-1])).strip()
            evalue = evalue.removeprefix(f"{ename}: ").removeprefix(ename).strip(": ")
        text = f"{ename}: {evalue}" if evalue else ename
    else:
        stderr = [out.get("text", "") for out in outputs
                  if out.get("output_type") == "stream" and out.get("name") == "stderr"]
        if not stderr:
            return None
        text = "stderr: " + " ".join("".join(stderr).split())
    text = _ANSI.sub("", text).strip()
    return text[:500] + ("…" if len(text) > 500 else "")


@dataclass
class NotebookResult:
    """One notebook of the assignment: its cells in notebook order."""

    name: str
    cells: list[CellResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Points known so far: cells waiting for manual grading count as nothing."""
        return float(sum(cell.score for cell in self.cells if cell.score is not None))

    @property
    def max_score(self) -> float:
        """All points the notebook can give, manually graded cells included."""
        return float(sum(cell.max_score for cell in self.cells))

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md notebook object."""
        return {
            "name": self.name,
            "score": self.score,
            "max_score": self.max_score,
            "cells": [cell.to_json() for cell in self.cells],
        }


@dataclass
class GradeResult:
    """The outcome of grading one submission.

    ``feedback`` maps notebook names to the feedback HTML the learner would see (empty
    when feedback was not asked for, or on a grader error).  ``log`` holds the grader's
    log lines and ``timings`` seconds per stage; neither is part of the JSON.
    ``flags`` are reasons for an instructor to review the submission (suspected tampering,
    see ``academy.engine.anticheat``); the portal stores them as ``Submission.flag_reasons``.
    ``executed`` maps notebook names to the notebook as the grader ran it (nbformat JSON text:
    the learner's code with the outputs of the graded run, and the tests with hidden tests
    put back); the portal builds its feedback page from it.  Not part of the JSON either.
    """

    status: GradeStatus
    notebooks: list[NotebookResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    student: str | None = None
    feedback: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    sandboxed: bool = False
    flags: list[str] = field(default_factory=list)
    executed: dict[str, str] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        """Total points, or None on a grader error (which is never a score of 0)."""
        if self.status is GradeStatus.grader_error:
            return None
        return float(sum(nb.score for nb in self.notebooks))

    @property
    def max_score(self) -> float | None:
        """Total points possible, or None when grading did not get that far."""
        if self.status is GradeStatus.grader_error and not self.notebooks:
            return None
        return float(sum(nb.max_score for nb in self.notebooks))

    def feedback_html(self) -> bytes | None:
        """All feedback as one UTF-8 HTML document, or None when there is none.

        One notebook: nbgrader's page as is.  Several: a page framing each notebook's page in
        a sandboxed ``iframe`` (``srcdoc``), so their scripts and styles stay apart.
        """
        if not self.feedback:
            return None
        if len(self.feedback) == 1:
            return next(iter(self.feedback.values())).encode("utf-8")
        parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>Feedback</title></head><body>']
        for name, page in self.feedback.items():
            parts.append(f"<h2>{html.escape(name)}</h2>")
            parts.append(f'<iframe sandbox title="{html.escape(name)}" style="width:100%;height:80vh;border:0" '
                         f'srcdoc="{html.escape(page, quote=True)}"></iframe>')
        parts.append("</body></html>")
        return "".join(parts).encode("utf-8")

    def to_json(self, *, with_student: bool = False) -> dict[str, Any]:
        """The DESIGN.md object; ``with_student`` adds ``"student"`` first (``--all``)."""
        data: dict[str, Any] = {"student": self.student} if with_student else {}
        data.update(
            {
                "status": self.status.value,
                "score": self.score,
                "max_score": self.max_score,
                "notebooks": [nb.to_json() for nb in self.notebooks],
                "problems": list(self.problems),
                "flags": list(self.flags),
            }
        )
        return data
