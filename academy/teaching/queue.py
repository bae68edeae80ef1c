"""The grading queue: every written answer still to grade and every flagged attempt still to decide.

One list across the submissions of the courses a member of staff teaches (or of one of them):
first the attempts with written answers waiting for points, oldest first, then the attempts the
grader flagged that nobody has confirmed or rejected yet, oldest first.  An attempt leaves the
queue once it is graded or decided, so "save and next" is the same position of the queue again.

Each item carries what an instructor needs to decide without opening the notebook: for a
written answer, the question as the notebook asks it, the learner's answer (from the graded run,
as the feedback page shows it, sanitised), and the model answer from the instructor's source
notebook of the version the learner answered; for a flagged attempt, the grader's reasons.
Plain functions of a Session and plain values.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from academy.grading.feedback import Block, plain_text, render_markdown, submission_feedback
from academy.grading.models import Submission
from academy.grading.standing import CellView, cell_views
from academy.teaching.services import waiting_queries

WRITTEN = "written"
FLAGGED = "flagged"


@dataclass(frozen=True)
class Entry:
    """A place in the queue: the attempt and why it waits."""

    submission_id: int
    kind: str  # WRITTEN or FLAGGED


@dataclass(frozen=True)
class Answer:
    """One written answer waiting for points."""

    view: CellView
    prompt: Block | None  # the instructions just above the answer in the notebook
    answer: Block | None  # the learner's answer (None: the notebook no longer holds the cell)
    model: Markup | None  # the instructor's model answer, rendered
    model_code: str | None  # or, for a code cell, its source


@dataclass(frozen=True)
class Item:
    """What the queue shows for one entry."""

    entry: Entry
    submission: Submission
    answers: list[Answer] = field(default_factory=list)
    flag_reasons: list[str] = field(default_factory=list)


def entries(session: Session, course_ids: Sequence[int]) -> list[Entry]:
    """The queue of ``course_ids``: written answers to grade (oldest first), then flags to decide (oldest first)."""
    if not course_ids:
        return []
    graded, flagged_query = waiting_queries(course_ids)
    oldest = (Submission.submitted_at, Submission.id)
    written = session.scalars(graded.with_only_columns(Submission.id).order_by(*oldest)).all()
    flagged = session.scalars(flagged_query.with_only_columns(Submission.id).order_by(*oldest)).all()
    found = [Entry(i, WRITTEN) for i in written]
    seen = set(written)
    found.extend(Entry(i, FLAGGED) for i in flagged if i not in seen)  # one place: its answers come first
    return found


def _model_answers(submission: Submission) -> dict[tuple[str, str], dict[str, Any]]:
    """(notebook, grade id) → the cell of the instructor's source notebook the learner's version was made from."""
    release = submission.release
    if release is None:
        return {}
    source_dir = Path(release.path) / "source" / submission.assignment.slug
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for notebook in {c.notebook for c in submission.cells}:
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            parsed = json.loads((source_dir / f"{notebook.removesuffix('.ipynb')}.ipynb").read_text("utf-8"))
            for cell in parsed.get("cells", []) if isinstance(parsed, dict) else []:
                meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
                if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
                    cells[(notebook, meta["grade_id"])] = cell
    return cells


def item(session: Session, entry: Entry, data_dir: Path) -> Item:
    """Everything the queue page shows for ``entry``."""
    submission = session.get(Submission, entry.submission_id)
    if submission is None:
        raise LookupError(entry.submission_id)
    if entry.kind == FLAGGED:
        return Item(entry, submission, flag_reasons=list(submission.flag_reasons or []))
    views = cell_views(submission, held=False)
    waiting = {v.cell.id for v in views if v.waiting}
    models = _model_answers(submission)
    answers: dict[int, Answer] = {}
    for notebook in submission_feedback(submission, views, data_dir):
        prompt: Block | None = None
        for block in notebook.blocks:
            if block.kind == "instructions":
                prompt = block
            view = block.question
            if view is None or view.cell.id not in waiting or view.cell.id in answers:
                continue
            model = models.get((view.cell.notebook, view.cell.grade_id))
            source = plain_text(model.get("source")) if model is not None else None
            is_code = model is not None and model.get("cell_type") == "code"
            answers[view.cell.id] = Answer(
                view, prompt if block.kind in ("written", "answer") else None,
                block if block.kind in ("written", "answer") else None,
                render_markdown(source) if source is not None and not is_code else None,
                source if is_code else None)
    ordered = [answers.get(v.cell.id) or Answer(v, None, None, None, None) for v in views if v.cell.id in waiting]
    return Item(entry, submission, answers=ordered)

