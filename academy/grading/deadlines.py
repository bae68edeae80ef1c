"""Deadlines, late penalties and which attempt counts: plain functions of plain values."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _

from academy.errors import ValidationFailed

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Lateness:
    """How late a submission is and what it costs."""

    late_days: int
    penalty_percent: float


def lateness(submitted_at: dt.datetime, due_at: dt.datetime | None, policy: dict[str, Any]) -> Lateness:
    """Days late (each started day counts) and the penalty under ``policy``.

    Raises ValidationFailed when the deadline has passed and the policy refuses late work.
    """
    if due_at is None or submitted_at <= due_at:
        return Lateness(0, 0.0)
    if policy.get("late_policy") == "refuse":
        raise ValidationFailed(_("The deadline has passed; this assignment does not accept late submissions."))
    days = math.ceil((submitted_at - due_at) / DAY)
    per_day = float(policy.get("late_penalty_per_day", 0.0))
    cap = float(policy.get("late_penalty_cap", 100.0))
    return Lateness(days, min(days * per_day, cap, 100.0))


def apply_penalty(raw_score: float, penalty_percent: float) -> float:
    """The score after a late penalty, rounded to hundredths."""
    return round(raw_score * (1.0 - penalty_percent / 100.0), 2)


def counting_score(attempts: Sequence[tuple[int, float | None]], score_policy: str) -> float | None:
    """The score that counts among ``(attempt, score)`` pairs: the best, or the last graded one.

    Attempts without a score (queued, or a grader error) are skipped.
    """
    scored = [(attempt, score) for attempt, score in attempts if score is not None]
    if not scored:
        return None
    if score_policy == "last":
        return max(scored)[1]
    return max(score for _attempt, score in scored)
