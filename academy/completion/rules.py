"""The passing rule of a course (``[passing]`` in ``course.toml``), judged on plain values.

A course is completed when every condition holds:

* each **required assignment** (``required_assignments``; every assignment of the course when
  the list is absent) has a final score of at least ``min_score_percent`` of its points, the
  same pass mark the assignment pages show as "passed";
* the **total** of the final scores of all the course's assignments is at least
  ``min_total_percent`` of all their points (only when the rule sets it; an assignment without a
  final score counts 0);
* the learner's **lab hours** in the course reach ``min_lab_hours`` (only when set).

A condition is *pending* while what decides it is not known yet (results held until the
deadline, an attempt being graded, a written answer waiting for the instructor): a pending
condition is not met, but it does not withdraw a completion already recorded either.  The
completion date is the moment the last condition became true, from the data (when the final
score was known, when the lab hours were reached), so rebuilding gives the same dates.

No database access here: :mod:`academy.completion.services` gathers the values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PASS_MARK = 60.0
# Standings (academy.grading.standing.STATUSES) whose final score is not known yet.
PENDING_STATUSES = frozenset({"grading", "grader_error", "held", "waiting_for_instructor"})


@dataclass(frozen=True)
class PassingRule:
    """A course's ``[passing]`` table with its defaults applied."""

    min_score_percent: float = DEFAULT_PASS_MARK
    required: tuple[str, ...] = ()
    min_total_percent: float | None = None
    min_lab_hours: float | None = None

    @classmethod
    def from_manifest(cls, rule: dict[str, Any] | None, assignments: Sequence[str]) -> PassingRule:
        """The rule as stored on the course; no ``required_assignments`` means every assignment."""
        rule = rule or {}
        required = [slug for slug in rule.get("required_assignments") or assignments if slug in assignments]
        total = rule.get("min_total_percent")
        hours = rule.get("min_lab_hours")
        return cls(
            min_score_percent=float(rule.get("min_score_percent", DEFAULT_PASS_MARK)),
            required=tuple(required),
            min_total_percent=None if total is None else float(total),
            min_lab_hours=None if not hours else float(hours),
        )

    def as_json(self) -> dict[str, Any]:
        """The rule as recorded with a completion."""
        return {"min_score_percent": self.min_score_percent, "required_assignments": list(self.required),
                "min_total_percent": self.min_total_percent, "min_lab_hours": self.min_lab_hours}


@dataclass(frozen=True)
class AssignmentResult:
    """What the rule needs of one assignment: the learner's standing and final score on it."""

    slug: str
    status: str  # a standing status (academy.grading.standing.STATUSES)
    score: float | None  # the final score that counts; None while unknown
    max_score: float
    final_at: dt.datetime | None  # when that final score became known to the learner


@dataclass(frozen=True)
class Condition:
    """One condition of the rule for one learner."""

    kind: str  # "assignment", "total" or "lab_hours"
    met: bool
    pending: bool  # not decided yet (results held, being graded, waiting for the instructor)
    need: float  # percent for scores, hours for lab time
    have: float | None
    at: dt.datetime | None = None  # when it became true
    assignment: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The condition as recorded with a withdrawal."""
        return {"kind": self.kind, "assignment": self.assignment, "need": self.need,
                "have": None if self.have is None else round(self.have, 2), "pending": self.pending}


@dataclass(frozen=True)
class Outcome:
    """The rule judged for one learner."""

    conditions: list[Condition] = field(default_factory=list)
    score_percent: float | None = None
    lab_hours: float = 0.0

    @property
    def met(self) -> bool:
        """Every condition holds."""
        return bool(self.conditions) and all(c.met for c in self.conditions)

    @property
    def failed(self) -> list[Condition]:
        """The conditions that do not hold and will not by waiting: they withdraw a completion."""
        return [c for c in self.conditions if not c.met and not c.pending]

    @property
    def completed_at(self) -> dt.datetime | None:
        """The moment the last condition became true (None while not met)."""
        if not self.met:
            return None
        moments = [c.at for c in self.conditions if c.at is not None]
        return max(moments) if moments else None


def _percent(score: float | None, maximum: float) -> float | None:
    if score is None:
        return None
    return 100.0 * score / maximum if maximum > 0 else 0.0


def judge(rule: PassingRule, results: Sequence[AssignmentResult], *, lab_hours: float = 0.0,
          lab_hours_reached_at: dt.datetime | None = None) -> Outcome:
    """Judge ``rule`` on a learner's results (one per assignment of the course) and lab hours."""
    by_slug = {r.slug: r for r in results}
    conditions = []
    for slug in rule.required:
        result = by_slug.get(slug)
        if result is None:
            conditions.append(Condition("assignment", False, False, rule.min_score_percent, None, assignment=slug))
            continue
        have = _percent(result.score, result.max_score)
        met = result.status == "passed" and have is not None and have >= rule.min_score_percent
        pending = not met and result.status in PENDING_STATUSES
        conditions.append(Condition("assignment", met, pending, rule.min_score_percent, have,
                                    at=result.final_at if met else None, assignment=slug))
    total_max = sum(r.max_score for r in results)
    known = sum(r.score or 0.0 for r in results if r.score is not None)
    score_percent = _percent(known, total_max) if results else None
    if rule.min_total_percent is not None:
        met = score_percent is not None and score_percent >= rule.min_total_percent
        unknown = any(r.status in PENDING_STATUSES for r in results)
        at = max((r.final_at for r in results if r.score is not None and r.final_at), default=None)
        conditions.append(Condition("total", met, not met and unknown, rule.min_total_percent, score_percent,
                                    at=at if met else None))
    if rule.min_lab_hours is not None:
        met = lab_hours >= rule.min_lab_hours
        conditions.append(Condition("lab_hours", met, False, rule.min_lab_hours, lab_hours,
                                    at=lab_hours_reached_at if met else None))
    return Outcome(conditions, score_percent, lab_hours)


def hours_reached(spans: Sequence[tuple[dt.datetime, dt.datetime]], hours: float) -> dt.datetime | None:
    """When the lab time of ``spans`` (start, end), taken in order, first adds up to ``hours``."""
    needed = hours * 3600.0
    for start, end in sorted(spans):
        length = max((end - start).total_seconds(), 0.0)
        if length >= needed:
            return start + dt.timedelta(seconds=needed)
        needed -= length
    return None
