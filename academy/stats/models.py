"""Summary tables the statistics read, rebuilt from the source tables by :mod:`academy.stats.refresh`.

At 100,000 learners and millions of graded submissions, counting the funnel from the source
tables on every page view is too slow, so a job (every ten minutes, and on an admin's request)
rebuilds two tables, in one transaction so readers see either the old or the new figures:

* ``stats_learner_course``: one row per learner and course of a track they hold (or held) a
  seat in, with the learner's company, region, industry and job role, and when they first
  started a lab, submitted, passed an assignment and completed the course and the track, their
  lab and GPU hours in that course, and the weeks (Monday, Asia/Seoul) in which they started a
  lab or submitted in it, as bits (bit i: i weeks before the rebuild's week, 13 weeks);
* ``stats_learner_track``: the same added up per seat (learner and track), for the figures that count
  learners without a course in the filters; each seat also names, per stage, the latest earlier seat of the
  same learner that reached it (``prev_*_on``), and per week kept the latest earlier seat active then
  (``prev_w<i>_on``), so that learners are counted once without grouping by learner;
* ``stats_best_score``: each learner's best graded score per assignment, for the score distribution;
* ``stats_course_day``: ``stats_learner_course`` added up per course and day of enrollment, for the hours and
  completions per course of a period (with or without a track or a course);
* ``stats_month_funnel`` and ``stats_month_company``: the seats added up per month of enrollment, for a period's
  months (the funnel per region, industry or job role, the seats active per week, and the hours per
  company).

``stats_refresh`` holds when the figures were last rebuilt, shown on the page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, Float, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from academy.extensions import db

#: The funnel's stages, in order: the summary tables' stage columns (and their ``prev_<stage>_on``), after
#: ``enrolled``, which every row is.
STAGES = ("enrolled", "started", "submitted", "passed", "completed_course", "completed_track")


class LearnerCourse(db.Model):
    """A learner's progress in one course of a track they enrolled in (see the module docstring)."""

    __tablename__ = "stats_learner_course"
    __table_args__ = (
        Index("ix_stats_lc_track_course", "track_id", "course_id"),
        Index("ix_stats_lc_company", "company_id"),
        Index("ix_stats_lc_user", "user_id"),
        Index("ix_stats_lc_course", "course_id"),
        Index("ix_stats_lc_region", "region"),
        Index("ix_stats_lc_industry_job", "industry", "job_role"),
        # The completed learner-courses of a period, with their days: the median read from the index.
        Index("ix_stats_lc_completed_on", "enrolled_on", "days_to_complete",
              postgresql_where=text("days_to_complete IS NOT NULL"), sqlite_where=text("days_to_complete IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    track_id: Mapped[int] = mapped_column(Integer)
    course_id: Mapped[int] = mapped_column(Integer)
    cohort_id: Mapped[int] = mapped_column(Integer, index=True)
    company_id: Mapped[int | None] = mapped_column(Integer)
    region: Mapped[str | None] = mapped_column(String(40))
    industry: Mapped[str | None] = mapped_column(String(40))
    job_role: Mapped[str | None] = mapped_column(String(40))
    enrolled_on: Mapped[dt.date] = mapped_column(Date, index=True)  # the enrollment request, Asia/Seoul
    enrolled_month: Mapped[str] = mapped_column(String(7))  # "2026-03"
    started: Mapped[bool] = mapped_column(default=False)  # a lab of this course ran
    submitted: Mapped[bool] = mapped_column(default=False)
    passed: Mapped[bool] = mapped_column(default=False)  # an assignment of this course passed
    completed_course: Mapped[bool] = mapped_column(default=False)
    completed_track: Mapped[bool] = mapped_column(default=False)
    days_to_complete: Mapped[float | None] = mapped_column(Float)  # from the cohort's start to the course completion
    lab_hours: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)  # GPU-hours (devices x hours), whole GPUs
    gpu_shared_hours: Mapped[float] = mapped_column(Float, default=0.0)  # hours on a shared GPU
    weeks: Mapped[int] = mapped_column(Integer, default=0)  # bit i: active i weeks before the rebuild's week


class LearnerTrack(db.Model):
    """A learner's progress in one track they hold (or held) a seat in: their ``stats_learner_course`` rows of
    that seat added up (a stage reached in any course, the courses and completed courses counted, the hours
    summed).  The funnel counts learners, so without a course in the filters or the grouping it reads these
    rows: a third as many, and no filter of theirs varies between the courses of one seat."""

    __tablename__ = "stats_learner_track"
    __table_args__ = (
        Index("ix_stats_lt_track", "track_id"),
        Index("ix_stats_lt_company", "company_id"),
        Index("ix_stats_lt_region", "region"),
        Index("ix_stats_lt_industry_job", "industry", "job_role"),
        Index("ix_stats_lt_job", "job_role"),
        Index("ix_stats_lt_user", "user_id"),
        # The seats active in the weeks kept, for the active learners per week of a period.
        Index("ix_stats_lt_active_on", "enrolled_on", "user_id", "weeks",
              postgresql_where=text("weeks <> 0"), sqlite_where=text("weeks <> 0")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    track_id: Mapped[int] = mapped_column(Integer)
    cohort_id: Mapped[int] = mapped_column(Integer, index=True)
    company_id: Mapped[int | None] = mapped_column(Integer)
    region: Mapped[str | None] = mapped_column(String(40))
    industry: Mapped[str | None] = mapped_column(String(40))
    job_role: Mapped[str | None] = mapped_column(String(40))
    enrolled_on: Mapped[dt.date] = mapped_column(Date, index=True)
    enrolled_month: Mapped[str] = mapped_column(String(7))
    started: Mapped[bool] = mapped_column(default=False)
    submitted: Mapped[bool] = mapped_column(default=False)
    passed: Mapped[bool] = mapped_column(default=False)
    completed_course: Mapped[bool] = mapped_column(default=False)
    completed_track: Mapped[bool] = mapped_column(default=False)
    courses: Mapped[int] = mapped_column(Integer, default=0)  # its stats_learner_course rows
    completed_courses: Mapped[int] = mapped_column(Integer, default=0)
    lab_hours: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_shared_hours: Mapped[float] = mapped_column(Float, default=0.0)
    weeks: Mapped[int] = mapped_column(Integer, default=0)  # its courses' weeks, together
    # Per stage, when the latest earlier seat of the same learner (seats in order of enrolled_on, then track)
    # that reached it was enrolled (None: no earlier seat reached it).  All of a learner's seats share the filters
    # of a learner (company, region, industry, job role), so among the seats in scope, the seat enrolled on or
    # after the period's start whose earlier one of the stage is from before it (or none) is the learner's only
    # counted one: a learner is counted once by summing rows, without grouping by learner.
    prev_enrolled_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_started_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_submitted_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_passed_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_completed_course_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_completed_track_on: Mapped[dt.date | None] = mapped_column(Date)
    # The same per week kept (``prev_w<i>_on``: the latest earlier seat active in the week of bit i of ``weeks``),
    # so that the active learners per week are counted once the same way (``WEEK_COLUMNS``).
    prev_w0_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w1_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w2_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w3_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w4_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w5_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w6_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w7_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w8_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w9_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w10_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w11_on: Mapped[dt.date | None] = mapped_column(Date)
    prev_w12_on: Mapped[dt.date | None] = mapped_column(Date)


#: ``LearnerTrack``'s earlier-seat day per bit of ``weeks`` (bit i: ``prev_w<i>_on``).
WEEK_COLUMNS = tuple(f"prev_w{i}_on" for i in range(13))


def week_bit(weeks: Any, bit: int) -> Any:
    """SQL: bit ``bit`` of a ``weeks`` column, 1 when active in that week, else 0 (written so SQLite runs it too)."""
    return weeks.op(">>")(bit).op("&")(1)


class BestScore(db.Model):
    """A learner's best graded score in one assignment (graded attempts with a score), for the score
    distribution: a course's rows instead of a scan of its submissions.  Rebuilt with the other tables."""

    __tablename__ = "stats_best_score"
    __table_args__ = (Index("ix_stats_best_score_assignment", "assignment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)


class CourseDay(db.Model):
    """``stats_learner_course`` added up per course and day of enrollment: the learner-courses (``courses``), the
    completed ones and the hours.  The hours and completions per course of a period (alone or with a track or a
    course) add up a few rows per day instead of every learner-course of the period."""

    __tablename__ = "stats_course_day"
    __table_args__ = (Index("ix_stats_course_day_on", "enrolled_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(Integer)
    course_id: Mapped[int] = mapped_column(Integer)
    enrolled_on: Mapped[dt.date] = mapped_column(Date)
    courses: Mapped[int] = mapped_column(Integer)
    completed_courses: Mapped[int] = mapped_column(Integer)
    lab_hours: Mapped[float] = mapped_column(Float)
    gpu_hours: Mapped[float] = mapped_column(Float)
    gpu_shared_hours: Mapped[float] = mapped_column(Float)


class MonthFunnel(db.Model):
    """``stats_learner_track`` added up per month of enrollment, value of one learner attribute (``dimension``:
    region, industry or job role), stage, and the day of the seat's earlier seat of that stage (``prev_on``, its
    ``prev_*_on``).  A period's months are counted from these rows, the days of its partial months added or taken
    off from the seats: the seats a period counts at a stage are those whose ``prev_on`` is before the period (or
    none), so keeping that day keeps every period countable (see :func:`academy.stats.queries.month_split`).  The
    rows of dimension ``"week"`` (no value) count the seats active per week kept the same way: stage ``w<bit>``,
    ``prev_on`` the seat's ``prev_w<bit>_on``."""

    __tablename__ = "stats_month_funnel"
    __table_args__ = (Index("ix_stats_month_funnel", "dimension", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # "2026-03", as enrolled_month
    dimension: Mapped[str] = mapped_column(String(10))
    value: Mapped[str | None] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(20))
    prev_on: Mapped[dt.date | None] = mapped_column(Date)
    seats: Mapped[int] = mapped_column(Integer)


class MonthCompany(db.Model):
    """``stats_learner_track`` added up per month of enrollment and company: learner-courses, completed ones and
    hours, for the hours per company of a period's months."""

    __tablename__ = "stats_month_company"
    __table_args__ = (Index("ix_stats_month_company", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    company_id: Mapped[int | None] = mapped_column(Integer)
    courses: Mapped[int] = mapped_column(Integer)
    completed_courses: Mapped[int] = mapped_column(Integer)
    lab_hours: Mapped[float] = mapped_column(Float)
    gpu_hours: Mapped[float] = mapped_column(Float)
    gpu_shared_hours: Mapped[float] = mapped_column(Float)


class Refresh(db.Model):
    """When the summary tables were last rebuilt (one row)."""

    __tablename__ = "stats_refresh"

    id: Mapped[int] = mapped_column(primary_key=True)
    refreshed_at: Mapped[dt.datetime]
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    rows: Mapped[int] = mapped_column(Integer, default=0)


class CachedFigures(db.Model):
    """The figures of one view of the dashboard (filters, grouping, language), computed once per rebuild.

    The summary tables change only when they are rebuilt, so a view's figures are kept until then: every
    portal process answers the same filters from here instead of counting again.  A rebuild empties the
    table and computes at once the default view and those of each single track, course, region, industry and job
    role (``academy.stats.page.warm``).
    """

    __tablename__ = "stats_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the view
    refreshed_at: Mapped[dt.datetime]  # the rebuild the figures belong to
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
