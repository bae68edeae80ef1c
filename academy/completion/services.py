"""Recording completions: judge the passing rule after every change that can decide it.

Called after a grading result (the worker), grading by hand, a regrade, a changed rule
(``academy init``) and, periodically, when deadlines pass and held results become final.
:func:`refresh` brings one learner's completion of one course (and so of its track) in line
with :mod:`academy.completion.rules`:

* the rule holds and no completion is in force: a completion is recorded, dated when the last
  condition became true;
* a completion is in force and a condition now fails for good (a regrade lowered a score, the
  rule became stricter): it is withdrawn with the reason and the failing conditions, and the
  track completion recorded with it is withdrawn too;
* otherwise nothing changes, so calling it again is harmless (``academy completion recompute``).

A track is completed when each of its active courses is; a track completion is withdrawn only
when a course completion it was recorded with is withdrawn (a course added to the track later
does not take it away).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.catalog.models import Assignment, Course, Track
from academy.certificates.services import issue, issue_missing, revoke_for_completion
from academy.completion.models import Completion
from academy.completion.rules import AssignmentResult, Outcome, PassingRule, hours_reached, judge
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.grading.models import Extension, Submission
from academy.grading.services import cohort_deadline
from academy.grading.standing import Standing, learner_standings
from academy.labs.models import LabSession
from academy.mail.services import queue_mail
from academy.users.models import User

log = logging.getLogger(__name__)

REASONS = ("score_changed", "rule_changed", "deadline", "recompute", "course_withdrawn")


@dataclass
class Change:
    """What a refresh recorded and withdrew."""

    recorded: list[Completion] = field(default_factory=list)
    withdrawn: list[Completion] = field(default_factory=list)

    def add(self, other: Change) -> None:
        """Fold another change into this one."""
        self.recorded += other.recorded
        self.withdrawn += other.withdrawn


def rule_of(course: Course) -> PassingRule:
    """The course's passing rule over its active assignments."""
    return PassingRule.from_manifest(course.passing_rule, [a.slug for a in course.assignments if a.active])


def _final_at(standing: Standing) -> dt.datetime | None:
    """When the counted attempt's final score became known to the learner."""
    counted = standing.counted
    if counted is None:
        return None
    submission = counted.submission
    moment = submission.graded_at or submission.submitted_at
    if standing.assignment.policy("hidden_tests") == "after_deadline" and standing.due_at is not None:
        moment = max(moment, standing.due_at)
    return moment


def _lab_spans(session: Session, user_id: int, course_id: int, now: dt.datetime
               ) -> list[tuple[dt.datetime, dt.datetime]]:
    rows = session.execute(select(LabSession.started_at, LabSession.stopped_at).where(
        LabSession.user_id == user_id, LabSession.course_id == course_id, LabSession.started_at.is_not(None)))
    return [(start, min(stop or now, now)) for start, stop in rows if start <= now]


def course_outcome(session: Session, user: User, course: Course, *, now: dt.datetime | None = None) -> Outcome:
    """The passing rule of ``course`` judged for ``user`` now, as the learner's pages see it."""
    now = now or utcnow()
    assignments = [a for a in course.assignments if a.active]
    standings = learner_standings(session, user, assignments, cohort=None, now=now, look_up_cohort=True)
    return outcome_from(session, user, course, standings, now=now)


def outcome_from(session: Session, user: User, course: Course, standings: dict[int, Standing], *,
                 now: dt.datetime, lab_hours: bool = True) -> Outcome:
    """The rule judged on standings the caller already has (by assignment id; the dashboard's).

    ``lab_hours``: add up the learner's lab time even when the rule does not ask for it (it is
    recorded with a completion); the dashboard skips that query.
    """
    rule = rule_of(course)
    results = []
    for assignment in course.assignments:
        standing = standings.get(assignment.id)
        if not assignment.active or standing is None:
            continue
        results.append(AssignmentResult(assignment.slug, standing.status, standing.score, standing.max_score,
                                        _final_at(standing) if standing.score is not None else None))
    spans = _lab_spans(session, user.id, course.id, now) if lab_hours or rule.min_lab_hours else []
    hours = sum((end - start).total_seconds() for start, end in spans) / 3600.0
    reached = hours_reached(spans, rule.min_lab_hours) if rule.min_lab_hours else None
    return judge(rule, results, lab_hours=hours, lab_hours_reached_at=reached)


def in_force(session: Session, user_id: int, *, course_id: int | None = None,
             track_id: int | None = None) -> Completion | None:
    """The completion in force of a course (``course_id``) or of a track (``track_id``)."""
    query = select(Completion).where(Completion.user_id == user_id, Completion.withdrawn_at.is_(None))
    if course_id is not None:
        query = query.where(Completion.course_id == course_id)
    else:
        query = query.where(Completion.track_id == track_id, Completion.course_id.is_(None))
    return session.scalar(query)


def _insert(session: Session, row: Completion) -> bool:
    """Add ``row`` unless another transaction recorded the same completion first (the unique index)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False
    return True


def _withdraw(session: Session, row: Completion, *, now: dt.datetime, reason: str,
              detail: list[dict] | None) -> None:
    row.withdrawn_at = now
    row.withdrawn_reason = reason
    row.withdrawn_detail = detail or []
    record(session, "completion.withdraw", actor=None, target_type="completion", target_id=row.id,
           learner=row.user_id, reason=reason)
    revoke_for_completion(session, row, now=now)


def _tell(session: Session, user: User, change: Change) -> None:
    """Mail the learner what was recorded and withdrawn, in their language."""
    locale = user.locale or "ko"
    with force_locale(locale):
        for row in change.recorded:
            title = row.title(locale)
            queue_mail(session, user.email, _("You completed %(title)s", title=title),
                       _("Congratulations, %(name)s: you met every condition of %(title)s. Your certificate "
                         "(a PDF, and a digital credential an employer can check) is on your dashboard.",
                         name=user.name, title=title))
        for row in change.withdrawn:
            title = row.title(locale)
            queue_mail(session, user.email, _("Your completion of %(title)s was withdrawn", title=title),
                       _("After a change to your scores or to the course's rule, %(title)s no longer counts as "
                         "completed, and its certificate is revoked. Your dashboard shows what is missing; once "
                         "it is met again, the completion is recorded again with a new certificate.", title=title))


def refresh(session: Session, user: User, course: Course, *, now: dt.datetime | None = None,
            reason: str = "score_changed", notify: bool = True) -> Change:
    """Bring ``user``'s completion of ``course`` and of its track in line with the rule.

    ``reason`` (one of ``REASONS``) is recorded with a withdrawal.  ``notify``: mail the learner.
    Runs in the caller's transaction; commits nothing.
    """
    now = now or utcnow()
    change = Change()
    outcome = course_outcome(session, user, course, now=now)
    current = in_force(session, user.id, course_id=course.id)
    if current is None and outcome.met:
        row = Completion(user_id=user.id, track_id=course.track_id, course_id=course.id,
                         completed_at=min(outcome.completed_at or now, now), recorded_at=now,
                         score_percent=outcome.score_percent, lab_hours=round(outcome.lab_hours, 2),
                         evidence={"rule": rule_of(course).as_json(),
                                   "conditions": [c.as_json() for c in outcome.conditions]})
        if _insert(session, row):
            record(session, "completion.record", actor=None, target_type="completion", target_id=row.id,
                   learner=user.id)
            change.recorded.append(row)
    elif current is not None and outcome.failed:
        _withdraw(session, current, now=now, reason=reason, detail=[c.as_json() for c in outcome.failed])
        change.withdrawn.append(current)
    change.add(refresh_track(session, user, course.track, now=now))
    session.flush()
    for row in change.recorded:
        issue(session, row, now=now)
    if notify and (change.recorded or change.withdrawn):
        _tell(session, user, change)
    return change


def refresh_track(session: Session, user: User, track: Track, *, now: dt.datetime | None = None) -> Change:
    """Record or withdraw ``user``'s completion of ``track`` from their course completions."""
    now = now or utcnow()
    change = Change()
    courses = [c for c in track.courses if c.active]
    rows = {row.course_id: row for row in session.scalars(select(Completion).where(
        Completion.user_id == user.id, Completion.track_id == track.id, Completion.course_id.is_not(None),
        Completion.withdrawn_at.is_(None)))}
    current = in_force(session, user.id, track_id=track.id)
    if current is None:
        if courses and all(c.id in rows for c in courses):
            taken = [rows[c.id] for c in courses]
            row = Completion(user_id=user.id, track_id=track.id, course_id=None,
                             completed_at=max(r.completed_at for r in taken), recorded_at=now,
                             lab_hours=round(sum(r.lab_hours for r in taken), 2),
                             evidence={"courses": [c.id for c in courses]})
            if _insert(session, row):
                record(session, "completion.record", actor=None, target_type="completion", target_id=row.id,
                       learner=user.id)
                change.recorded.append(row)
    else:
        lost = [cid for cid in (current.evidence or {}).get("courses", []) if cid not in rows]
        if lost:
            _withdraw(session, current, now=now, reason="course_withdrawn",
                      detail=[{"kind": "course", "course": cid} for cid in lost])
            change.withdrawn.append(current)
    return change


def refresh_safely(session: Session, user: User, course: Course, *, reason: str = "score_changed") -> Change:
    """:func:`refresh` in a savepoint: a failure is logged and undone, the caller's work stays.

    For the grading paths, where a score must be saved even if judging the rule fails; the next
    change or ``academy completion recompute`` judges it again.
    """
    try:
        with session.begin_nested():
            return refresh(session, user, course, reason=reason)
    except Exception:  # noqa: BLE001 - the score is what must not be lost
        log.exception("could not judge the completion of course %s for user %s", course.id, user.id)
        return Change()


@dataclass
class RecomputeReport:
    """What ``academy completion recompute`` did."""

    learners: int = 0
    recorded: int = 0
    withdrawn: int = 0
    certificates: int = 0  # certificates issued for completions in force that had none

    def as_json(self) -> dict[str, int]:
        """The figures, for ``--json``."""
        return {"learners": self.learners, "recorded": self.recorded, "withdrawn": self.withdrawn,
                "certificates": self.certificates}


def _learners_of(session: Session, course: Course) -> list[int]:
    """Everyone whose completion of ``course`` could hold or be in force."""
    assignment_ids = select(Assignment.id).where(Assignment.course_id == course.id)
    query = union(
        select(Submission.user_id).where(Submission.assignment_id.in_(assignment_ids)),
        select(Completion.user_id).where(Completion.course_id == course.id),
        select(LabSession.user_id).where(LabSession.course_id == course.id),
    )
    return sorted(session.scalars(query))


def recompute(session: Session, *, courses: Iterable[Course] | None = None, now: dt.datetime | None = None,
              reason: str = "recompute", notify: bool = False) -> RecomputeReport:
    """Judge every learner of ``courses`` (all active courses by default) again; idempotent."""
    now = now or utcnow()
    if courses is None:
        courses = session.scalars(select(Course).where(Course.active).order_by(Course.id)).all()
    report = RecomputeReport()
    seen: set[int] = set()
    for course in courses:
        for user_id in _learners_of(session, course):
            user = session.get(User, user_id)
            if user is None:
                continue
            seen.add(user_id)
            change = refresh(session, user, course, now=now, reason=reason, notify=notify)
            report.recorded += len(change.recorded)
            report.withdrawn += len(change.withdrawn)
    report.learners = len(seen)
    report.certificates = issue_missing(session, now=now)
    return report


def rule_snapshot(session: Session) -> dict[int, object]:
    """What the completion of each course depends on in the catalogue: its rule and assignments."""
    snapshot: dict[int, object] = {}
    for course in session.scalars(select(Course)):
        snapshot[course.id] = (repr(sorted((course.passing_rule or {}).items())), course.active,
                               tuple(sorted((a.slug, a.active, a.max_score) for a in course.assignments)))
    return snapshot


def recompute_changed_rules(session: Session, before: dict[int, object], *,
                            now: dt.datetime | None = None) -> RecomputeReport:
    """After loading the catalogue: judge again the courses whose rule or assignments changed."""
    after = rule_snapshot(session)
    changed = [session.get(Course, cid) for cid, value in after.items() if cid in before and before[cid] != value]
    if not changed:
        return RecomputeReport()
    return recompute(session, courses=[c for c in changed if c is not None], now=now, reason="rule_changed",
                     notify=True)


def refresh_due(session: Session, *, since: dt.datetime, now: dt.datetime | None = None) -> int:
    """Judge again the learners whose deadline passed in ``(since, now]``: their held results are final now.

    Returns how many (learner, course) pairs were judged.  Overlapping windows are harmless.
    """
    now = now or utcnow()
    pairs: set[tuple[int, int]] = set()
    for extension in session.scalars(select(Extension).where(Extension.due_at > since, Extension.due_at <= now)):
        pairs.add((extension.user_id, extension.assignment_id))
    cohorts = session.scalars(select(Cohort).where(Cohort.starts_at <= now, Cohort.ends_at > since)).all()
    for cohort in cohorts:
        due = [a.id for course in cohort.track.courses for a in course.assignments
               if a.active and since < cohort_deadline(a, cohort) <= now]
        if not due:
            continue
        members = select(Enrollment.user_id).where(Enrollment.cohort_id == cohort.id,
                                                   Enrollment.status == EnrollmentStatus.enrolled)
        for user_id, assignment_id in session.execute(
                select(Submission.user_id, Submission.assignment_id).distinct()
                .where(Submission.assignment_id.in_(due), Submission.user_id.in_(members))):
            pairs.add((user_id, assignment_id))
    judged: set[tuple[int, int]] = set()
    for user_id, assignment_id in sorted(pairs):
        assignment = session.get(Assignment, assignment_id)
        user = session.get(User, user_id)
        if assignment is None or user is None or (user_id, assignment.course_id) in judged:
            continue
        judged.add((user_id, assignment.course_id))
        refresh(session, user, assignment.course, now=now, reason="deadline")
    return len(judged)
