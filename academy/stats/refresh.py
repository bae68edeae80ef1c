"""Rebuilding the statistics' summary tables from the source tables (see :mod:`academy.stats.models`).

Definitions, for every figure the statistics show:

* a learner **enrolled** in a track when an enrollment of theirs holds or held a seat in one of
  its cohorts (status ``enrolled``, or ``withdrawn`` after having been enrolled); waiting,
  pending and rejected requests are not enrollments.  A learner with several such enrollments in
  one track (a new cohort after withdrawing) counts once, with the latest;
* **started**: a lab of one of the track's courses ran; **submitted**: a notebook was submitted to
  one of its assignments; **passed**: a graded attempt reached the course's pass mark
  (``min_score_percent``); **completed a course / the track**: a completion in force
  (:mod:`academy.completion`);
* **lab hours**: how long the learner's labs of the course ran; **GPU-hours**: the same times the
  number of whole GPUs, and separately hours on a shared GPU;
* **days to completion**: from the later of the cohort's start and the enrollment to the course
  completion;
* dates and weeks are in Asia/Seoul.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, insert, literal, or_, select, text
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course
from academy.completion.models import Completion
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentEvent, EnrollmentStatus
from academy.grading.models import Submission, SubmissionStatus
from academy.grading.standing import course_pass_mark
from academy.i18n import DISPLAY_TIMEZONE
from academy.labs.models import LabSession
from academy.stats.models import (
    STAGES,
    WEEK_COLUMNS,
    BestScore,
    CourseDay,
    LearnerCourse,
    LearnerTrack,
    MonthCompany,
    MonthFunnel,
    Refresh,
    week_bit,
)
from academy.users.models import User

SEOUL = ZoneInfo(DISPLAY_TIMEZONE)
BATCH = 5000
ACTIVITY_WEEKS = len(WEEK_COLUMNS)  # how far back the weekly activity goes (13): the 12 weeks shown, the first whole


@dataclass
class RefreshReport:
    """What a rebuild wrote."""

    rows: int
    activity_rows: int  # learner-course rows with activity in the weeks kept
    seconds: float
    refreshed_at: dt.datetime


def _day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(SEOUL).date()


def _week(moment: dt.datetime) -> dt.date:
    day = _day(moment)
    return day - dt.timedelta(days=day.weekday())


def _seats(session: Session) -> dict[tuple[int, int], tuple[int, int, dt.datetime, dt.datetime]]:
    """(user, track) → (enrollment id, cohort id, enrolled at, cohort start) of the latest seat held."""
    held = select(EnrollmentEvent.enrollment_id).where(EnrollmentEvent.to_status == EnrollmentStatus.enrolled.value)
    query = (select(Enrollment.id, Enrollment.user_id, Cohort.track_id, Enrollment.cohort_id, Enrollment.requested_at,
                    Cohort.starts_at)
             .join(Cohort, Cohort.id == Enrollment.cohort_id)
             .where(or_(Enrollment.status == EnrollmentStatus.enrolled,
                        and_(Enrollment.status == EnrollmentStatus.withdrawn, Enrollment.id.in_(held))))
             .order_by(Enrollment.requested_at, Enrollment.id))
    seats = {}
    for enrollment_id, user_id, track_id, cohort_id, requested_at, starts_at in session.execute(query):
        seats[(user_id, track_id)] = (enrollment_id, cohort_id, requested_at, starts_at)  # the latest wins
    return seats


def _pass_marks(session: Session) -> dict[int, float]:
    """Course id → pass mark as a fraction (the rule's ``min_score_percent``, 60 by default)."""
    return {course_id: course_pass_mark(rule) / 100.0
            for course_id, rule in session.execute(select(Course.id, Course.passing_rule))}


class _Batches:
    """Rows inserted into ``model``'s table a batch at a time."""

    def __init__(self, session: Session, model: type) -> None:
        self.session, self.model, self.rows, self.written = session, model, [], 0

    def append(self, row: dict[str, object]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.session.execute(insert(self.model), self.rows)
            self.written += len(self.rows)
            self.rows = []

    def close(self) -> int:
        """Insert what is left; returns how many rows were written in all."""
        self._flush()
        return self.written


def rebuild(session: Session, *, now: dt.datetime | None = None) -> RefreshReport:
    """Rebuild the summary tables; runs in the caller's transaction (commit to publish)."""
    started_clock = time.perf_counter()
    now = now or utcnow()
    seats = _seats(session)
    people = {uid: (company, region, industry, job) for uid, company, region, industry, job in session.execute(
        select(User.id, User.company_id, User.region, User.industry, User.job_role))}
    courses_of: dict[int, list[int]] = defaultdict(list)
    for course_id, track_id in session.execute(select(Course.id, Course.track_id).where(Course.active)
                                               .order_by(Course.position, Course.id)):
        courses_of[track_id].append(course_id)
    track_of = {cid: tid for tid, cids in courses_of.items() for cid in cids}
    marks = _pass_marks(session)

    labs: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    started: set[tuple[int, int]] = set()
    activity: set[tuple[dt.date, int, int]] = set()
    since = now - dt.timedelta(weeks=ACTIVITY_WEEKS)
    for user_id, course_id, begin, end, profile, gpus in session.execute(
            select(LabSession.user_id, LabSession.course_id, LabSession.started_at, LabSession.stopped_at,
                   LabSession.profile, LabSession.gpus).where(LabSession.started_at.is_not(None))):
        key = (user_id, course_id)
        started.add(key)
        hours = max(((end or now) - begin).total_seconds(), 0.0) / 3600.0
        totals = labs[key]
        totals[0] += hours
        if profile == "gpu-shared":
            totals[2] += hours
        elif gpus:
            totals[1] += hours * gpus
        if begin >= since:
            activity.add((_week(begin), user_id, course_id))

    submitted = {(u, c) for u, c in session.execute(
        select(Submission.user_id, Assignment.course_id).join(Assignment, Assignment.id == Submission.assignment_id)
        .group_by(Submission.user_id, Assignment.course_id))}
    for user_id, course_id, moment in session.execute(
            select(Submission.user_id, Assignment.course_id, Submission.submitted_at)
            .join(Assignment, Assignment.id == Submission.assignment_id).where(Submission.submitted_at >= since)):
        activity.add((_week(moment), user_id, course_id))
    mark = case(marks, value=Assignment.course_id, else_=0.6) if marks else 0.6
    passed = {(u, c) for u, c in session.execute(
        select(Submission.user_id, Assignment.course_id).join(Assignment, Assignment.id == Submission.assignment_id)
        .where(Submission.status == SubmissionStatus.graded, Submission.score.is_not(None), Assignment.max_score > 0,
               Submission.score >= Assignment.max_score * mark)
        .group_by(Submission.user_id, Assignment.course_id))}
    course_done: dict[tuple[int, int], dt.datetime] = {}
    track_done: set[tuple[int, int]] = set()
    for user_id, course_id, track_id, completed_at in session.execute(
            select(Completion.user_id, Completion.course_id, Completion.track_id, Completion.completed_at)
            .where(Completion.withdrawn_at.is_(None))):
        if course_id is None:
            track_done.add((user_id, track_id))
        else:
            course_done[(user_id, course_id)] = completed_at

    # Weekly activity as bits on each row: bit i is the week (Monday, Asia/Seoul) i weeks before this one.
    anchor = _week(now)
    weeks: dict[tuple[int, int], int] = defaultdict(int)
    for week, user_id, course_id in activity:
        index = (anchor - week).days // 7
        if 0 <= index < ACTIVITY_WEEKS:
            weeks[(user_id, course_id)] |= 1 << index

    session.execute(delete(LearnerCourse))
    session.execute(delete(LearnerTrack))
    session.execute(delete(BestScore))
    session.execute(delete(CourseDay))
    session.execute(delete(MonthFunnel))
    session.execute(delete(MonthCompany))
    # Written learner by learner in order of industry, job role and company: the rows of any filter by those
    # (alone or together) lie together on disk, so it reads a few pages instead of a few rows on every page.  (The
    # views of a single track or course are computed by every rebuild, see academy.stats.page.warm.)
    # What is the same for every course of a seat, worked out once per seat.
    members: list[tuple[tuple[str, str, int, int, int], dict[str, Any], dt.datetime]] = []
    for (user_id, track_id), (_enrollment, cohort_id, requested_at, starts_at) in seats.items():
        company, region, industry, job = people.get(user_id, (None, None, None, None))
        enrolled_on = _day(requested_at)
        members.append(((industry or "", job or "", company or 0, user_id, track_id), {
            "user_id": user_id, "track_id": track_id, "cohort_id": cohort_id, "company_id": company,
            "region": region, "industry": industry, "job_role": job, "enrolled_on": enrolled_on,
            "enrolled_month": enrolled_on.strftime("%Y-%m"), "completed_track": (user_id, track_id) in track_done,
        }, max(requested_at, starts_at)))
    members.sort(key=lambda member: member[0])
    rows = _Batches(session, LearnerCourse)
    for (_industry, _job, _company, user_id, track_id), seat, origin in members:
        for course_id in sorted(courses_of.get(track_id, [])):
            key = (user_id, course_id)
            done_at = course_done.get(key)
            lab_hours, gpu_hours, shared_hours = labs.get(key, (0.0, 0.0, 0.0))
            rows.append({
                **seat, "course_id": course_id,
                "started": key in started, "submitted": key in submitted, "passed": key in passed,
                "completed_course": done_at is not None,
                "days_to_complete": (None if done_at is None
                                     else max((done_at - origin).total_seconds(), 0) / 86400),
                "lab_hours": round(lab_hours, 4), "gpu_hours": round(gpu_hours, 4),
                "gpu_shared_hours": round(shared_hours, 4), "weeks": weeks.get(key, 0),
            })
    written = rows.close()
    _add_up_seats(session)
    _add_up_days(session)
    _add_up_months(session)
    _best_scores(session)

    activity_written = sum(1 for key in weeks if key[1] in track_of and (key[0], track_of[key[1]]) in seats)

    _analyze(session)
    seconds = time.perf_counter() - started_clock
    state = session.get(Refresh, 1)
    if state is None:
        state = Refresh(id=1, refreshed_at=now)
        session.add(state)
    state.refreshed_at, state.seconds, state.rows = now, seconds, written
    session.flush()
    return RefreshReport(rows=written, activity_rows=activity_written, seconds=seconds, refreshed_at=now)


def _analyze(session: Session) -> None:
    """Fresh planner statistics for the rewritten tables, in the rebuild's transaction: the figures' queries are
    planned for the new rows from the first view (autovacuum would get to them later, if it runs at all).  Their
    dead rows are autovacuum's (or ``VACUUM``'s) to reclaim."""
    for model in (LearnerCourse, LearnerTrack, BestScore, CourseDay, MonthFunnel, MonthCompany):
        session.execute(text(f"ANALYZE {model.__tablename__}"))


def _add_up_seats(session: Session) -> None:
    """Fill ``stats_learner_track`` from ``stats_learner_course``: one row per seat, each with the dates of the
    learner's latest earlier seat per stage (``prev_*_on``, see :class:`LearnerTrack`)."""
    lc = LearnerCourse

    def reached(column: Any) -> Any:
        return func.max(case((column, 1), else_=0)) > 0

    columns = ["user_id", "track_id", "cohort_id", "company_id", "region", "industry", "job_role", "enrolled_on",
               "enrolled_month", "started", "submitted", "passed", "completed_course", "completed_track", "courses",
               "completed_courses", "lab_hours", "gpu_hours", "gpu_shared_hours", "weeks"]
    # The seat's weeks: each bit set in any of its courses (a bitwise OR, written so that SQLite can run it).
    any_week = sum(func.max(week_bit(lc.weeks, i)) * (1 << i) for i in range(ACTIVITY_WEEKS))
    sums = [lc.user_id, lc.track_id, func.max(lc.cohort_id), func.max(lc.company_id), func.max(lc.region),
            func.max(lc.industry), func.max(lc.job_role), func.max(lc.enrolled_on), func.max(lc.enrolled_month),
            reached(lc.started), reached(lc.submitted), reached(lc.passed), reached(lc.completed_course),
            reached(lc.completed_track), func.count(), func.sum(case((lc.completed_course, 1), else_=0)),
            func.sum(lc.lab_hours), func.sum(lc.gpu_hours), func.sum(lc.gpu_shared_hours), any_week]
    seat = (select(*[value.label(name) for name, value in zip(columns, sums, strict=True)])
            .group_by(lc.track_id, lc.user_id).subquery()).c
    # The learner's earlier seats: in order of enrollment day, then track (a learner holds one seat per track).
    earlier = {"partition_by": seat.user_id, "order_by": (seat.enrolled_on, seat.track_id), "rows": (None, -1)}

    def latest_earlier(stage: str | None) -> Any:
        day = seat.enrolled_on if stage is None else case((seat[stage], seat.enrolled_on))
        return func.max(day).over(**earlier)

    def latest_earlier_active(bit: int) -> Any:
        return func.max(case((week_bit(seat.weeks, bit) == 1, seat.enrolled_on))).over(**earlier)

    prev = {f"prev_{stage}_on": None if stage == "enrolled" else stage for stage in STAGES}
    # Month by month of enrollment, then as the learner-course rows (industry, job role, company, learner, track):
    # a period's seats lie together, and within each month those of an industry, a job role or a company.
    query = (select(*seat, *[latest_earlier(stage) for stage in prev.values()],
                    *[latest_earlier_active(bit) for bit in range(len(WEEK_COLUMNS))])
             .order_by(seat.enrolled_month, func.coalesce(seat.industry, ""), func.coalesce(seat.job_role, ""),
                       func.coalesce(seat.company_id, 0), seat.user_id, seat.track_id))
    session.execute(insert(LearnerTrack).from_select([*columns, *prev, *WEEK_COLUMNS], query))


def _add_up_days(session: Session) -> None:
    """Fill ``stats_course_day`` from ``stats_learner_course``: per course and day of enrollment, in day order."""
    lc = LearnerCourse
    days = (select(lc.track_id, lc.course_id, lc.enrolled_on, func.count(),
                   func.sum(case((lc.completed_course, 1), else_=0)), func.sum(lc.lab_hours), func.sum(lc.gpu_hours),
                   func.sum(lc.gpu_shared_hours))
            .group_by(lc.enrolled_on, lc.track_id, lc.course_id).order_by(lc.enrolled_on, lc.track_id, lc.course_id))
    session.execute(insert(CourseDay).from_select(
        ["track_id", "course_id", "enrolled_on", "courses", "completed_courses", "lab_hours", "gpu_hours",
         "gpu_shared_hours"], days))


#: The learner attributes whose funnel a period's months are counted for (``stats_month_funnel``).
MONTH_DIMENSIONS = ("region", "industry", "job_role")
#: ``stats_month_funnel``'s rows of the seats active per week kept (stage ``w<bit>``, no value).
WEEK_DIMENSION = "week"


def _add_up_months(session: Session) -> None:
    """Fill ``stats_month_funnel`` (the funnel per learner attribute, and the seats active per week) and
    ``stats_month_company`` from ``stats_learner_track`` (see :class:`MonthFunnel`)."""
    lt = LearnerTrack
    for dimension in MONTH_DIMENSIONS:
        value = getattr(lt, dimension)
        for stage in STAGES:
            prev = getattr(lt, f"prev_{stage}_on")
            query = (select(lt.enrolled_month, literal(dimension), value, literal(stage), prev, func.count())
                     .group_by(lt.enrolled_month, value, prev).order_by(lt.enrolled_month))
            if stage != "enrolled":
                query = query.where(getattr(lt, stage))
            session.execute(insert(MonthFunnel).from_select(
                ["month", "dimension", "value", "stage", "prev_on", "seats"], query))
    # The active learners per week: per week kept (stage "w<bit>"), the seats active that week (dimension "week").
    for bit, column in enumerate(WEEK_COLUMNS):
        prev = getattr(lt, column)
        query = (select(lt.enrolled_month, literal(WEEK_DIMENSION), literal(None), literal(f"w{bit}"), prev,
                        func.count())
                 .where(week_bit(lt.weeks, bit) == 1)
                 .group_by(lt.enrolled_month, prev).order_by(lt.enrolled_month))
        session.execute(insert(MonthFunnel).from_select(
            ["month", "dimension", "value", "stage", "prev_on", "seats"], query))
    companies = (select(lt.enrolled_month, lt.company_id, func.sum(lt.courses), func.sum(lt.completed_courses),
                        func.sum(lt.lab_hours), func.sum(lt.gpu_hours), func.sum(lt.gpu_shared_hours))
                 .group_by(lt.enrolled_month, lt.company_id).order_by(lt.enrolled_month))
    session.execute(insert(MonthCompany).from_select(
        ["month", "company_id", "courses", "completed_courses", "lab_hours", "gpu_hours", "gpu_shared_hours"],
        companies))


def _best_scores(session: Session) -> None:
    """Fill ``stats_best_score``: per learner and assignment, the best graded score (assignment by assignment, so
    that an assignment's rows lie together)."""
    best = (select(Submission.assignment_id, Submission.user_id, func.max(Submission.score))
            .where(Submission.status == SubmissionStatus.graded, Submission.score.is_not(None))
            .group_by(Submission.assignment_id, Submission.user_id)
            .order_by(Submission.assignment_id, Submission.user_id))
    session.execute(insert(BestScore).from_select(["assignment_id", "user_id", "score"], best))


def last_refresh(session: Session) -> Refresh | None:
    """When the figures were last rebuilt (``None``: never)."""
    return session.get(Refresh, 1)
