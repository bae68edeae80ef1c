"""Nudges: an instructor's message to learners at risk, and whether they came back.

A nudge goes to learners who hold a seat in a cohort of the course's track; it is an inbox
message of kind ``nudge`` (and a mail unless the learner turned nudges off) and a
:class:`~academy.teaching.models.Nudge` row with the at-risk reasons the learner had then.  A
batch is all or nothing: when one of the learners has withdrawn meanwhile (or never was in the
course), nothing is sent and the error names them.

A nudged learner *came back* when they started a lab session or submitted an attempt in the
course within :data:`COME_BACK_DAYS` days after the nudge.  That is read from their activity each
time, never stored.  Per cohort, the share of nudged learners who came back counts each learner
once (any of their nudges answered), leaving out those whose week has not ended yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import Conflict, ValidationFailed
from academy.grading.models import Submission
from academy.inbox.services import check_text, tell
from academy.labs.models import LabSession
from academy.teaching.models import Nudge
from academy.users.models import User

COME_BACK_DAYS = 7
BACK = "back"
WAITING = "waiting"
NOT_BACK = "not_back"


@dataclass(frozen=True)
class Outcome:
    """A nudge and the learner's first activity in the course after it (within the week, else None)."""

    nudge: Nudge
    came_back_at: dt.datetime | None
    state: str  # BACK, WAITING (the week is not over) or NOT_BACK


@dataclass(frozen=True)
class CohortShare:
    """How the nudged learners of one cohort answered: each learner counted once."""

    cohort: Cohort
    nudged: int
    came_back: int
    waiting: int

    @property
    def decided(self) -> int:
        return self.nudged - self.waiting

    @property
    def share(self) -> float | None:
        """Came back among the learners whose week is over or who came back; None when there are none yet."""
        return self.came_back / self.decided if self.decided else None


def _seats(session: Session, course: Course, user_ids: Collection[int]) -> dict[int, Enrollment]:
    """User id → the seat they hold in a cohort of the course's track, else their latest row there."""
    rows = session.scalars(
        select(Enrollment).join(Cohort, Cohort.id == Enrollment.cohort_id)
        .where(Cohort.track_id == course.track_id, Enrollment.user_id.in_(sorted(user_ids)))
        .order_by(Enrollment.requested_at, Enrollment.id))
    latest: dict[int, Enrollment] = {}
    for row in rows:  # oldest first: a seat held stays, otherwise the latest row wins
        current = latest.get(row.user_id)
        if current is None or current.status != EnrollmentStatus.enrolled:
            latest[row.user_id] = row
    return latest


def send_nudges(session: Session, course: Course, user_ids: Sequence[int], subject: str, body: str, *,
                sender: User, link: str | None, reasons: Mapping[int, Sequence[str]] | None = None,
                now: dt.datetime | None = None) -> list[Nudge]:
    """Nudge each learner of ``user_ids`` in ``course``; all of them or none.

    ``reasons``: user id → the at-risk codes they have now (kept with the nudge).  Refused with
    ValidationFailed for no learner or an empty or too long text, and with Conflict, naming them,
    when a learner holds no seat in a cohort of the course (withdrawn since, or never enrolled).
    """
    subject, body = check_text(subject, body)
    wanted = list(dict.fromkeys(user_ids))
    if not wanted:
        raise ValidationFailed(_("Choose at least one learner to nudge."))
    seats = _seats(session, course, wanted)
    people = {u.id: u for u in session.scalars(select(User).where(User.id.in_(wanted)))}
    problems = []
    for user_id in wanted:
        seat = seats.get(user_id)
        person = people.get(user_id)
        if seat is not None and person is not None and seat.status == EnrollmentStatus.enrolled:
            continue
        name = person.name if person is not None else f"#{user_id}"
        if seat is not None and seat.status == EnrollmentStatus.withdrawn:
            problems.append(_("%(name)s has withdrawn from %(cohort)s.", name=name, cohort=seat.cohort.name))
        else:
            problems.append(_("%(name)s is not enrolled in this course.", name=name))
    if problems:
        raise Conflict(" ".join([*problems, _("No nudge was sent.")]))

    now = now or utcnow()
    reasons = reasons or {}
    sent = []
    for user_id in wanted:
        message = tell(session, people[user_id], "nudge", subject, body, link=link, sender=sender)
        nudge = Nudge(user_id=user_id, course_id=course.id, cohort_id=seats[user_id].cohort_id, sender_id=sender.id,
                      message_id=message.id if message is not None else None,
                      reasons=list(reasons.get(user_id, ())), sent_at=now)
        session.add(nudge)
        sent.append(nudge)
    session.flush()
    record(session, "teaching.nudge", actor=sender, target_type="course", target_id=course.id,
           subject=subject, recipients=[n.user_id for n in sent])
    return sent


def outcomes(session: Session, course: Course, *, cohort_id: int | None = None,
             now: dt.datetime | None = None) -> list[Outcome]:
    """The course's nudges (of one cohort when given), newest first, each with whether the learner came back.

    One query: each nudge with the learner's first submission in the course and first lab
    session for it at or after the nudge.
    """
    now = now or utcnow()
    assignments = select(Assignment.id).where(Assignment.course_id == course.id)
    first_submission = (select(func.min(Submission.submitted_at))
                        .where(Submission.user_id == Nudge.user_id, Submission.assignment_id.in_(assignments),
                               Submission.submitted_at >= Nudge.sent_at)
                        .correlate(Nudge).scalar_subquery())
    first_lab = (select(func.min(LabSession.queued_at))
                 .where(LabSession.user_id == Nudge.user_id, LabSession.course_id == course.id,
                        LabSession.queued_at >= Nudge.sent_at)
                 .correlate(Nudge).scalar_subquery())
    query = select(Nudge, first_submission, first_lab).where(Nudge.course_id == course.id)
    if cohort_id is not None:
        query = query.where(Nudge.cohort_id == cohort_id)
    week = dt.timedelta(days=COME_BACK_DAYS)
    found = []
    for nudge, submitted, lab in session.execute(query.order_by(Nudge.sent_at.desc(), Nudge.id.desc())):
        times = [_aware(t) for t in (submitted, lab) if t is not None]
        back = min(times) if times else None
        if back is not None and (back - nudge.sent_at > week or back > now):  # too late, or not yet at ``now``
            back = None
        waiting = now - nudge.sent_at < week
        state = BACK if back is not None else WAITING if waiting else NOT_BACK
        found.append(Outcome(nudge, back, state))
    return found


def _aware(value: dt.datetime | str) -> dt.datetime:
    """An aggregate over a UTC column comes back naive (or as text on SQLite): read it as UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def latest_by_learner(found: Sequence[Outcome]) -> dict[int, Outcome]:
    """User id → the outcome of their latest nudge (``found`` newest first, as :func:`outcomes` gives it)."""
    latest: dict[int, Outcome] = {}
    for outcome in found:
        latest.setdefault(outcome.nudge.user_id, outcome)
    return latest


def shares(found: Sequence[Outcome]) -> list[CohortShare]:
    """Per cohort (by name), how many learners were nudged, came back, or are still in their week."""
    per_learner: dict[tuple[int, int], list[Outcome]] = {}
    cohorts: dict[int, Cohort] = {}
    for outcome in found:
        per_learner.setdefault((outcome.nudge.cohort_id, outcome.nudge.user_id), []).append(outcome)
        cohorts[outcome.nudge.cohort_id] = outcome.nudge.cohort
    counts: dict[int, list[int]] = {cohort_id: [0, 0, 0] for cohort_id in cohorts}
    for (cohort_id, _user_id), theirs in per_learner.items():
        counts[cohort_id][0] += 1
        if any(o.state == BACK for o in theirs):
            counts[cohort_id][1] += 1
        elif theirs[0].state == WAITING:  # newest first: the latest nudge's week is still running
            counts[cohort_id][2] += 1
    return sorted((CohortShare(cohorts[c], *n) for c, n in counts.items()),
                  key=lambda s: (s.cohort.starts_at, s.cohort.name))
