"""The statistics, computed in SQL over the summary tables (see :mod:`academy.stats.refresh` for definitions).

Every function takes a :class:`Filters` (built and checked by :func:`parse_filters` from the page's
query string, the API's or the command line's options) and returns plain values, the same for
the page, ``academy stats --json`` and ``/api/v1/stats``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import Integer, Select, and_, case, cast, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course, Track
from academy.enrollment.models import Cohort
from academy.errors import NotFound, ValidationFailed
from academy.stats.models import (
    STAGES,
    WEEK_COLUMNS,
    BestScore,
    CourseDay,
    LearnerCourse,
    LearnerTrack,
    MonthCompany,
    MonthFunnel,
    week_bit,
)
from academy.stats.refresh import MONTH_DIMENSIONS
from academy.users import reference
from academy.users.models import Company

FILTER_KEYS = ("track", "course", "cohort", "company", "region", "industry", "job_role", "from", "to")
DIMENSIONS = ("track", "course", "cohort", "company", "region", "industry", "job_role", "month")
#: Dimensions that are attributes of the learner (one value, or none, per learner): their groups' funnels add up
#: to the whole funnel.
LEARNER_DIMENSIONS = ("company", "region", "industry", "job_role")
EARLIEST = dt.date(2000, 1, 1)
MAX_ID = 2**31 - 1
LATEST_YEARS_AHEAD = 5
BUCKETS = 10  # score distribution: 0-10 %, ..., 90-100 %


@dataclass(frozen=True)
class Filters:
    """Which learners the figures are about; ``None`` means any."""

    track: int | None = None
    course: int | None = None
    cohort: int | None = None
    company: int | None = None  # company id (the API and the command line name it by business number)
    region: str | None = None
    industry: str | None = None
    job_role: str | None = None
    date_from: dt.date | None = None  # enrolled on or after (Asia/Seoul)
    date_to: dt.date | None = None  # enrolled on or before

    def as_query(self) -> dict[str, str]:
        """The filters as query-string parameters (for links and exports)."""
        out = {}
        for key, value in asdict(self).items():
            if value is not None:
                out["from" if key == "date_from" else "to" if key == "date_to" else key] = str(value)
        return out

    @property
    def empty(self) -> bool:
        """No filter at all."""
        return not self.as_query()


def _integer(raw: str, message: str, field: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise ValidationFailed(message, field=field)
    value = int(raw)
    if not 1 <= value <= MAX_ID:  # no row has it (and the database's integer would overflow)
        raise NotFound(message)
    return value


def _date(raw: str, field: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(_("Write dates as YYYY-MM-DD (for example 2026-03-01)."), field=field) from None
    latest = dt.date.today().replace(year=dt.date.today().year + LATEST_YEARS_AHEAD)
    if not EARLIEST <= day <= latest:
        raise ValidationFailed(_("Choose a date between %(first)s and %(last)s.", first=EARLIEST.isoformat(),
                                 last=latest.isoformat()), field=field)
    return day


def parse_filters(session: Session, params: Mapping[str, str | None]) -> Filters:
    """Filters from query parameters (``track``, ``course``, ``cohort``, ``company``, ``region``, ``industry``,
    ``job_role``, ``from``, ``to``); empty values are ignored.

    ``company`` is a company id or a business registration number.  Raises
    :class:`ValidationFailed` with a message in the user's language for an unknown value or a
    date range that is malformed, absurd or reversed.
    """
    raw = {k: (params.get(k) or "").strip() for k in FILTER_KEYS}
    values: dict[str, Any] = {}
    if raw["track"]:
        values["track"] = _integer(raw["track"], _("There is no such track."), "track")
        if session.get(Track, values["track"]) is None:
            raise NotFound(_("There is no such track."))
    if raw["course"]:
        values["course"] = _integer(raw["course"], _("There is no such course."), "course")
        if session.get(Course, values["course"]) is None:
            raise NotFound(_("There is no such course."))
    if raw["cohort"]:
        values["cohort"] = _integer(raw["cohort"], _("There is no such cohort."), "cohort")
        if session.get(Cohort, values["cohort"]) is None:
            raise NotFound(_("There is no such cohort."))
    if raw["company"]:
        company = None
        if raw["company"].isdigit() and len(raw["company"]) < 10:
            company = session.get(Company, int(raw["company"])) if int(raw["company"]) <= MAX_ID else None
        else:
            try:
                number = reference.normalize_business_number(raw["company"])
            except ValueError:
                number = None
            if number is not None:
                company = session.scalar(select(Company).where(Company.business_number == number))
        if company is None:
            raise NotFound(_("There is no such company."))
        values["company"] = company.id
    for key, known in (("region", reference.REGIONS), ("industry", reference.INDUSTRIES),
                       ("job_role", reference.JOB_ROLES)):
        if raw[key]:
            if raw[key] not in known:
                raise ValidationFailed(_("Choose one of the listed values for %(what)s.", what=dimension_label(key)),
                                       field=key)
            values[key] = raw[key]
    if raw["from"]:
        values["date_from"] = _date(raw["from"], "from")
    if raw["to"]:
        values["date_to"] = _date(raw["to"], "to")
    if values.get("date_from") and values.get("date_to") and values["date_from"] > values["date_to"]:
        raise ValidationFailed(_("The start of the period is after its end."), field="from")
    return Filters(**values)


def dimension_label(key: str) -> str:
    """A dimension's name, for headings and messages."""
    return {"track": _("Track"), "course": _("Course"), "cohort": _("Cohort"), "company": _("Company"),
            "region": _("Region"), "industry": _("Industry"), "job_role": _("Job role"),
            "month": _("Month of enrollment")}[key]


def _where(query: Select[Any], model: Any, filters: Filters) -> Select[Any]:
    conditions = []
    for key, column in (("track", "track_id"), ("course", "course_id"), ("cohort", "cohort_id"),
                        ("company", "company_id"), ("region", "region"), ("industry", "industry"),
                        ("job_role", "job_role")):
        value = getattr(filters, key)
        if value is not None:
            conditions.append(getattr(model, column) == value)
    if filters.date_from is not None:
        conditions.append(model.enrolled_on >= filters.date_from)
    if filters.date_to is not None:
        conditions.append(model.enrolled_on <= filters.date_to)
    return query.where(and_(*conditions)) if conditions else query


def _source(filters: Filters, dimension: str | None = None) -> Any:
    """The summary table to count learners in: per seat (``LearnerTrack``, a third of the rows) unless a course
    is in the filters or the grouping (``LearnerCourse``).  Every other filter and dimension is the same for all
    the courses of one seat, so both give the same counts."""
    return LearnerCourse if filters.course is not None or dimension == "course" else LearnerTrack


def _one_row_per_learner(filters: Filters, dimension: str | None = None) -> bool:
    """Whether each learner has at most one row of :func:`_source` in scope (in each group): a row per learner
    and course with one course in the filters or the grouping, a row per seat (learner and track) with one track
    or cohort in the filters or the grouping."""
    if _source(filters, dimension) is LearnerCourse:
        return True
    return filters.track is not None or filters.cohort is not None or dimension in ("track", "cohort")


def _per_learner(filters: Filters, dimension: str | None = None) -> Any:
    """One row per learner (and group key, as ``key``): whether they reached each stage, in scope."""
    lc = _source(filters, dimension)
    group = [_key_column(dimension, lc).label("key")] if dimension is not None else []
    query = select(*group, lc.user_id.label("user_id"),
                   func.max(cast(lc.started, Integer)).label("started"),
                   func.max(cast(lc.submitted, Integer)).label("submitted"),
                   func.max(cast(lc.passed, Integer)).label("passed"),
                   func.max(cast(lc.completed_course, Integer)).label("completed_course"),
                   func.max(cast(lc.completed_track, Integer)).label("completed_track"))
    return _where(query, lc, filters).group_by(*group, lc.user_id).subquery()


def _funnel_columns(sub: Any) -> list[Any]:
    return [func.count().label("enrolled")] + [func.coalesce(func.sum(sub.c[s]), 0).label(s) for s in STAGES[1:]]


def _counted_once(since: dt.date | None, stage: str, earlier: Any = None) -> Any:
    """Whether a seat is its learner's counted one for ``stage`` among the seats in scope: the first in scope
    (enrolled on or after the period's start, ``since``) of those that reached it.  Right where every filter but
    the period keeps all of a learner's seats or none (see :class:`LearnerTrack`).  ``earlier``: the column with
    the day of the seat's earlier seat of the stage (default ``LearnerTrack.prev_<stage>_on``)."""
    if earlier is None:
        earlier = getattr(LearnerTrack, f"prev_{stage}_on")
    if since is None:
        return earlier.is_(None)
    return or_(earlier.is_(None), earlier < since)


def _learner_counts(filters: Filters, dimension: str | None = None, *, by_company: bool = False,
                    since: Any = ...) -> Select[Any]:
    """Learners in scope at each stage (columns named after :data:`STAGES`), per value of ``dimension`` (``key``)
    when one is given; each learner counted once.

    Without grouping by learner where the rows allow it: one row per learner in scope (a course, a track or a
    cohort in the filters or the grouping), or, per seat, the learner's counted seat (a grouping by an attribute
    of the learner, or none).  Grouped by month of enrollment without one course, track or cohort, a learner's
    seats of different months fall apart: grouped by learner then.

    ``by_company`` (a grouping by an attribute of the learner, or none): per company too (``company``), with the
    sums of :func:`hour_groups`.  ``since``: the period's start that decides a learner's counted seat, when the
    filters' dates are a part of the period (:func:`counts_and_company_hours`)."""
    since = filters.date_from if since is ... else since
    lc = _source(filters, dimension)
    group = [_key_column(dimension, lc).label("key")] if dimension is not None else []
    hours: list[Any] = []
    if by_company:
        if dimension is not None and dimension not in LEARNER_DIMENSIONS:
            raise ValueError(f"a learner is in one company but in several groups by {dimension}")
        group.append(lc.company_id.label("company"))
        hours = _hour_columns(lc)
    if _one_row_per_learner(filters, dimension):
        columns = [func.count().label("enrolled")] + [
            func.coalesce(func.sum(cast(getattr(lc, stage), Integer)), 0).label(stage) for stage in STAGES[1:]]
        return _where(select(*group, *columns, *hours), lc, filters).group_by(*group)
    if dimension is None or dimension in LEARNER_DIMENSIONS:
        lt = LearnerTrack
        columns = [func.coalesce(func.sum(case((_counted_once(since, "enrolled"), 1), else_=0)), 0)
                   .label("enrolled")] + [
            func.coalesce(func.sum(case((and_(getattr(lt, stage), _counted_once(since, stage)), 1), else_=0)), 0)
            .label(stage) for stage in STAGES[1:]]
        return _where(select(*group, *columns, *hours), lt, filters).group_by(*group)
    sub = _per_learner(filters, dimension)
    keys = [sub.c.key] if dimension is not None else []
    return select(*keys, *_funnel_columns(sub)).group_by(*keys)


def _as_funnel(row: Any) -> dict[str, int]:
    return {stage: int(getattr(row, stage) or 0) for stage in STAGES}


def funnel(session: Session, filters: Filters) -> dict[str, int]:
    """Learners at each stage: ``enrolled``, ``started``, ``submitted``, ``passed``, ``completed_course``,
    ``completed_track``."""
    if month_split(filters) is not None:  # a period over months: per region from the month sums, added up
        groups, _companies = counts_and_company_hours(session, "region", filters)
        return {stage: sum(getattr(group, stage) for group in groups) for stage in STAGES}
    return _as_funnel(session.execute(_learner_counts(filters)).one())


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def _in_months(month: Any, first: str | None, last: str | None) -> list[Any]:
    """Conditions on a ``"2026-03"`` month column: from ``first`` to ``last`` (``None``: no bound)."""
    return [condition for condition in ((month >= first) if first else None, (month <= last) if last else None)
            if condition is not None]


Days = tuple[dt.date, dt.date]  # first and last day


@dataclass(frozen=True)
class MonthSplit:
    """A period counted from the month sums (``first`` to ``last``, ``"2026-03"``; ``None``: no bound), with
    the days of its partial months from the seats: added (``plus``) or, where the days of such a month outside
    the period are fewer, the whole month counted and those days taken off (``minus``)."""

    first: str | None
    last: str | None
    plus: tuple[Days, ...]
    minus: tuple[Days, ...]


def month_end(day: dt.date) -> dt.date:
    """The last day of ``day``'s month."""
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def month_split(filters: Filters) -> MonthSplit | None:
    """A period alone (no other filter) over two months or more: its months from the month sums, the days of
    its partial months from the seats, whichever of a partial month's days in or out of the period are fewer
    (the seats of two weeks at most at each end are read).  ``None`` otherwise: the figures come from the seats
    alone."""
    if filters.date_from is None and filters.date_to is None:
        return None
    if any(getattr(filters, key) is not None for key in ("track", "course", "cohort", "company", "region",
                                                          "industry", "job_role")):
        return None
    start, end = filters.date_from, filters.date_to
    if start is not None and end is not None and (start.year, start.month) == (end.year, end.month):
        return None
    plus: list[Days] = []
    minus: list[Days] = []
    first = last = None
    if start is not None:
        month_start, last_day = start.replace(day=1), month_end(start)
        if (start - month_start).days < (last_day - start).days + 1:  # fewer days before the period than in it
            first = _month(start)
            if start != month_start:
                minus.append((month_start, start - dt.timedelta(days=1)))
        else:
            first = _month(last_day + dt.timedelta(days=1))
            plus.append((start, last_day))
    if end is not None:
        month_start, last_day = end.replace(day=1), month_end(end)
        if (last_day - end).days < (end - month_start).days + 1:  # fewer days after the period than in it
            last = _month(end)
            if end != last_day:
                minus.append((end + dt.timedelta(days=1), last_day))
        else:
            last = _month(month_start - dt.timedelta(days=1))
            plus.append((month_start, end))
    if first is not None and last is not None and first > last:
        return None  # no month counted whole or nearly: the seats of the period are as few
    return MonthSplit(first, last, tuple(plus), tuple(minus))


def _labels(session: Session, dimension: str, keys: list[Any], locale: str) -> dict[Any, str]:
    if dimension == "track":
        return {t.id: t.title(locale) for t in session.scalars(select(Track).where(Track.id.in_(keys)))}
    if dimension == "course":
        return {c.id: c.title(locale) for c in session.scalars(select(Course).where(Course.id.in_(keys)))}
    if dimension == "cohort":
        return {key: name for key, name in session.execute(select(Cohort.id, Cohort.name).where(Cohort.id.in_(keys)))}
    if dimension == "company":
        return {key: name for key, name in session.execute(select(Company.id, Company.name)
                                                           .where(Company.id.in_(keys)))}
    lists = {"region": reference.REGIONS, "industry": reference.INDUSTRIES, "job_role": reference.JOB_ROLES}
    known = lists.get(dimension)
    if known is not None:
        return {k: str(known[k]) for k in keys if k in known}
    return {k: k for k in keys}  # month: "2026-03"


def no_value(dimension: str) -> str:
    """The label of the learners without a value of ``dimension`` (no company, no region given)."""
    return _("%(what)s not given", what=dimension_label(dimension))


def _key_column(dimension: str, lc: Any = LearnerCourse) -> Any:
    column = {"track": "track_id", "course": "course_id", "cohort": "cohort_id", "company": "company_id",
              "month": "enrolled_month"}.get(dimension, dimension)
    return getattr(lc, column)


def check_dimension(dimension: str) -> str:
    """``dimension`` when it is one of :data:`DIMENSIONS`; otherwise a clear error."""
    if dimension not in DIMENSIONS:
        raise ValidationFailed(_("Statistics can be grouped by: %(names)s.",
                                 names=", ".join(dimension_label(d) for d in DIMENSIONS)),
                               field="by")
    return dimension


def by_counts(session: Session, dimension: str, filters: Filters) -> list[Any]:
    """:func:`by`'s counts before labels: a row per value of ``dimension`` (``key``, then each stage)."""
    check_dimension(dimension)
    return list(session.execute(_learner_counts(filters, dimension)))


def counts_and_company_hours(session: Session, dimension: str, filters: Filters) -> tuple[list[Any], list[Any]]:
    """``by_counts(dimension)`` and ``hour_groups("company")`` of ``filters`` in one scan, for ``dimension`` in
    :data:`LEARNER_DIMENSIONS` (a learner is in one group and one company): counted per group and company, then
    added up."""
    check_dimension(dimension)
    split = month_split(filters) if dimension in MONTH_DIMENSIONS else None
    if split is not None:
        return _period_counts_and_company_hours(session, dimension, filters, split)
    # Added up as lists in the columns' order (thousands of rows per scan: no lookups by name per cell).
    counted: dict[Any, list[Any]] = {}
    companies: dict[Any, list[Any]] = {}
    stage_count = len(STAGES)
    for key, company, *sums in session.execute(_learner_counts(filters, dimension, by_company=True)):
        _add_into(counted, key, sums[:stage_count])
        _add_into(companies, company, sums[stage_count:])  # a company's learners may be in several groups
    return ([SimpleNamespace(key=key, **dict(zip(STAGES, group, strict=True))) for key, group in counted.items()],
            [SimpleNamespace(key=key, **dict(zip(HOUR_NAMES, sums, strict=True))) for key, sums in companies.items()])


HOUR_NAMES = ("taken", "done", "lab", "gpu", "shared")  # :func:`_hour_columns`' labels, in order


def _add_into(sums: dict[Any, list[Any]], key: Any, values: Sequence[Any]) -> None:
    """Add ``values`` into ``sums[key]`` one by one (``None`` as nothing)."""
    kept = sums.get(key)
    if kept is None:
        sums[key] = [value or 0 for value in values]
    else:
        for i, value in enumerate(values):
            kept[i] += value or 0


NO_DAYS = (dt.date.max, dt.date.min)  # a range no day is in


def _on_days(model: Any, days: Sequence[Days]) -> Any:
    """SQL: enrolled on one of the ``days`` (:class:`MonthSplit`'s: two ranges at most), as two ranges always,
    so that the statements of every period with partial months are the same, compiled once per process."""
    return or_(*(model.enrolled_on.between(first, last) for first, last in (*days, NO_DAYS, NO_DAYS)[:2]))


def _partial_days(split: MonthSplit) -> tuple[Any, Any]:
    """SQL over the seats: enrolled on a day of ``split``'s partial months (``plus`` or ``minus``), and the sign
    its figures are counted with (1, or -1 for the days taken off a month counted whole)."""
    lt = LearnerTrack
    return or_(_on_days(lt, split.plus), _on_days(lt, split.minus)), case((_on_days(lt, split.minus), -1), else_=1)


def _added_up(parts: list[Select[Any]], names: Sequence[str]) -> Select[Any]:
    """The rows of ``parts`` (columns ``key``, ``names`` and ``sign``) added up per key with their signs, in the
    database."""
    rows = union_all(*parts).subquery()
    return select(rows.c.key, *[func.sum(rows.c[name] * rows.c.sign).label(name) for name in names]) \
        .group_by(rows.c.key)


def _period_counts_and_company_hours(session: Session, dimension: str, filters: Filters, split: MonthSplit
                                     ) -> tuple[list[Any], list[Any]]:
    """:func:`counts_and_company_hours` of a period over months: the months from their sums, the days of its
    partial months added or taken off from the seats, a learner's counted seat decided by the period's start in
    both (see MonthFunnel); added up in the database (one row per group and per company comes back, not one per
    group and company)."""
    first, last = split.first, split.last
    mf, mc, lt = MonthFunnel, MonthCompany, LearnerTrack
    groups = [select(mf.value.label("key"), *[func.sum(case((mf.stage == stage, mf.seats), else_=0)).label(stage)
                                              for stage in STAGES], literal(1).label("sign"))
              .where(mf.dimension == dimension, *_in_months(mf.month, first, last),
                     _counted_once(filters.date_from, "", mf.prev_on))
              .group_by(mf.value)]
    companies = [select(mc.company_id.label("key"), *_hour_columns(mc), literal(1).label("sign"))
                 .where(*_in_months(mc.month, first, last)).group_by(mc.company_id)]
    if split.plus or split.minus:
        days, sign = _partial_days(split)
        groups.append(_learner_counts(Filters(), dimension, since=filters.date_from).add_columns(sign.label("sign"))
                      .where(days).group_by(sign))
        companies.append(select(lt.company_id.label("key"), *_hour_columns(lt), sign.label("sign"))
                         .where(days).group_by(lt.company_id, sign))
    # PostgreSQL adds up integers as numeric: back to int.  A group or company whose seats were all on days taken
    # off adds up to none: not in scope.  Hours taken off leave a float's rounding error: rounded off (no lab hour
    # shown is finer than a tenth).
    return ([SimpleNamespace(key=row.key, **{stage: int(getattr(row, stage) or 0) for stage in STAGES})
             for row in session.execute(_added_up(groups, STAGES)) if row.enrolled],
            [SimpleNamespace(key=key, taken=int(taken), done=int(done or 0),
                             **{name: round(value or 0.0, 6) for name, value in zip(HOUR_NAMES[2:], hours,
                                                                                     strict=True)})
             for key, taken, done, *hours in session.execute(_added_up(companies, HOUR_NAMES)) if taken])


def by(session: Session, dimension: str, filters: Filters, *, locale: str = "ko",
       limit: int | None = None, counts: list[Any] | None = None) -> list[dict[str, Any]]:
    """The funnel for each value of ``dimension``: ``[{"key", "label", "funnel"}]``, largest first
    (months in order).  Learners without a value (no company) are one row with key ``None``.  ``counts``:
    ``by_counts`` of the same dimension and filters when the caller has them."""
    check_dimension(dimension)
    rows = by_counts(session, dimension, filters) if counts is None else counts
    labels = _labels(session, dimension, [r.key for r in rows if r.key is not None], locale)
    out = [{"key": r.key, "label": labels.get(r.key, str(r.key)) if r.key is not None else no_value(dimension),
            "funnel": _as_funnel(r)} for r in rows]
    if dimension == "month":
        out.sort(key=lambda r: r["key"] or "")
    else:
        # Ties in size and label (cohorts of one name in two tracks) in the order of their keys.
        out.sort(key=lambda r: (-r["funnel"]["enrolled"], str(r["label"]), r["key"] is None, str(r["key"])))
    return out[:limit] if limit else out


def funnel_of(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The whole funnel from ``by``'s rows (all of them) for a dimension in :data:`LEARNER_DIMENSIONS`."""
    return {stage: sum(r["funnel"][stage] for r in rows) for stage in STAGES}


def completion(session: Session, filters: Filters, *, counts: tuple[int, int] | None = None) -> dict[str, Any]:
    """Completion rate (courses completed per learner-course in scope) and the median days to a completion.

    ``counts``: (learner-courses, completed ones) in scope when the caller has them (``hour_groups``).
    """
    lc = LearnerCourse
    if counts is None:
        done_rows = func.coalesce(func.sum(cast(lc.completed_course, Integer)), 0)
        counts = tuple(session.execute(_where(select(func.count(), done_rows), lc, filters)).one())
    taken, done = int(counts[0]), int(counts[1])
    median = median_days(session, filters, done)
    return {"course_enrollments": taken, "course_completions": done,
            "rate": round(done / taken, 4) if taken else None,
            "median_days": round(median, 1) if median is not None else None}


def median_days(session: Session, filters: Filters, completed: int) -> float | None:
    """The median of the days to complete over the ``completed`` learner-courses in scope (the rows with days to
    complete are the completed ones): the middle one or two in order, read by the database (``None``: none)."""
    if completed <= 0:
        return None
    lc = LearnerCourse
    middle = list(session.scalars(_where(select(lc.days_to_complete).where(lc.days_to_complete.is_not(None)),
                                         lc, filters)
                                  .order_by(lc.days_to_complete).offset((completed - 1) // 2)
                                  .limit(2 - completed % 2)))
    if not middle:
        return None
    return middle[0] if len(middle) == 1 else (middle[0] + middle[1]) / 2  # as statistics.median


def hour_groups(session: Session, filters: Filters, dimension: str) -> list[Any]:
    """Per value of ``dimension``, in scope: learner-courses (``taken``), completed ones (``done``), and the sums
    of lab hours (``lab``), GPU-hours (``gpu``) and shared-GPU hours (``shared``).  Every group, in one scan."""
    check_dimension(dimension)
    lc = _source(filters, dimension)
    if dimension in ("track", "course") and all(getattr(filters, key) is None for key in (
            "cohort", "company", "region", "industry", "job_role")):
        lc = CourseDay  # the same sums, added up per course and day
    key = _key_column(dimension, lc).label("key")
    return list(session.execute(_where(select(key, *_hour_columns(lc)), lc, filters).group_by(key)))


def _hour_columns(lc: Any) -> list[Any]:
    """:func:`hour_groups`' sums over rows of ``lc`` (learner-courses, seats, days or months)."""
    if lc is not LearnerCourse:
        taken, done = func.sum(lc.courses), func.sum(lc.completed_courses)
    else:
        taken, done = func.count(), func.sum(cast(lc.completed_course, Integer))
    return [func.coalesce(taken, 0).label("taken"), func.coalesce(done, 0).label("done"),
            func.sum(lc.lab_hours).label("lab"), func.sum(lc.gpu_hours).label("gpu"),
            func.sum(lc.gpu_shared_hours).label("shared")]


def hours_total(groups: list[Any]) -> dict[str, float]:
    """``hours_by_profile`` from every group of ``hour_groups``."""
    return {"lab_hours": round(sum(g.lab or 0 for g in groups), 1),
            "gpu_hours": round(sum(g.gpu or 0 for g in groups), 1),
            "gpu_shared_hours": round(sum(g.shared or 0 for g in groups), 1)}


def lab_hours(session: Session, filters: Filters, dimension: str, *, locale: str = "ko",
              limit: int | None = 10, groups: list[Any] | None = None) -> list[dict[str, Any]]:
    """Lab hours, GPU-hours and shared-GPU hours per value of ``dimension`` (``course`` or ``company``), largest
    GPU use first.  ``groups``: ``hour_groups`` of the same filters and dimension when the caller has them."""
    check_dimension(dimension)
    if groups is None:
        groups = hour_groups(session, filters, dimension)
    figures = [(r.key, round(r.lab or 0, 1), round(r.gpu or 0, 1), round(r.shared or 0, 1))
               for r in groups if (r.lab or 0) > 0]

    def size(figure: tuple[Any, float, float, float]) -> tuple[float, float]:
        return -(figure[2] + figure[3]), -figure[1]

    if limit and len(figures) > limit:
        # Only the largest (with those as large as the last of them: the label orders ties) are shown or labelled.
        last = sorted(size(f) for f in figures)[limit - 1]
        figures = [f for f in figures if size(f) <= last]
    labels = _labels(session, dimension, [f[0] for f in figures if f[0] is not None], locale)
    out = [{"key": key, "label": labels.get(key, str(key)) if key is not None else no_value(dimension),
            "lab_hours": lab, "gpu_hours": gpu, "gpu_shared_hours": shared} for key, lab, gpu, shared in figures]
    out.sort(key=lambda r: (-(r["gpu_hours"] + r["gpu_shared_hours"]), -r["lab_hours"], str(r["label"])))
    return out[:limit] if limit else out


def hours_by_profile(session: Session, filters: Filters) -> dict[str, float]:
    """Lab hours on CPU, GPU-hours on whole GPUs and hours on shared GPUs, in scope."""
    lc = LearnerCourse
    row = session.execute(_where(select(func.sum(lc.lab_hours), func.sum(lc.gpu_hours), func.sum(lc.gpu_shared_hours)),
                                 lc, filters)).one()
    return {"lab_hours": round(row[0] or 0, 1), "gpu_hours": round(row[1] or 0, 1),
            "gpu_shared_hours": round(row[2] or 0, 1)}


def weekly_active(session: Session, filters: Filters, *, weeks: int = 12, today: dt.date | None = None
                  ) -> list[dict[str, Any]]:
    """Distinct active learners per week (Monday, Asia/Seoul) for the last ``weeks`` weeks, oldest first.

    From the weeks kept as bits on the summary rows (see :mod:`academy.stats.models`): a week after the last
    rebuild's, or older than the weeks kept, counts nobody."""
    from academy.stats.refresh import ACTIVITY_WEEKS, SEOUL, _week, last_refresh

    today = today or dt.datetime.now(SEOUL).date()
    monday = today - dt.timedelta(days=today.weekday())
    first = monday - dt.timedelta(weeks=weeks - 1)
    shown = [first + dt.timedelta(weeks=i) for i in range(weeks)]
    state = last_refresh(session)
    counts: dict[dt.date, int] = {}
    if state is not None:
        anchor = _week(state.refreshed_at)
        bits = {week: (anchor - week).days // 7 for week in shown}
        bits = {week: bit for week, bit in bits.items() if 0 <= bit < ACTIVITY_WEEKS}
        if bits:
            lc = _source(filters)
            used = sorted(set(bits.values()))
            if _one_row_per_learner(filters):
                row = session.execute(_where(select(*[
                    func.coalesce(func.sum(week_bit(lc.weeks, bit)), 0).label(f"w{bit}") for bit in used]),
                    lc, filters)).one()
                learners = {bit: int(getattr(row, f"w{bit}")) for bit in used}
            else:
                learners = _weekly_once(session, filters, used)
            counts = {week: learners[bit] for week, bit in bits.items()}
    return [{"week": week.isoformat(), "learners": counts.get(week, 0)} for week in shown]


def _weekly_once(session: Session, filters: Filters, bits: list[int]) -> dict[int, int]:
    """Active learners per bit of ``weeks`` where several seats of a learner may be in scope: each learner once,
    by the seat in scope whose earlier seat active that week is not (``prev_w<bit>_on``, as the funnel's stages);
    a period's months from the month sums (``stats_month_funnel``, dimension "week"), the days of its partial
    months and any other filter from the seats."""
    from academy.stats.refresh import WEEK_DIMENSION

    lt = LearnerTrack
    learners = dict.fromkeys(bits, 0)

    def add_seats(scope: Filters, *days: Any, sign: Any = 1) -> None:
        def counted(bit: int) -> Any:
            active = week_bit(lt.weeks, bit) == 1
            once = _counted_once(filters.date_from, "", getattr(lt, WEEK_COLUMNS[bit]))
            return func.coalesce(func.sum(case((and_(active, once), sign), else_=0)), 0)

        row = session.execute(_where(select(*[counted(bit) for bit in bits]).where(lt.weeks != 0, *days),
                                     lt, scope)).one()
        for bit, value in zip(bits, row, strict=True):
            learners[bit] += int(value)

    split = month_split(filters)
    if split is None:
        add_seats(filters)
        return learners
    first, last = split.first, split.last
    mf = MonthFunnel
    stages = {f"w{bit}": bit for bit in bits}
    for stage, seats in session.execute(
            select(mf.stage, func.sum(mf.seats))
            .where(mf.dimension == WEEK_DIMENSION, mf.stage.in_(stages), *_in_months(mf.month, first, last),
                   _counted_once(filters.date_from, "", mf.prev_on))
            .group_by(mf.stage)):
        learners[stages[stage]] += int(seats or 0)
    if split.plus or split.minus:
        days, sign = _partial_days(split)
        add_seats(Filters(), days, sign=sign)
    return learners


def score_buckets(session: Session, filters: Filters) -> tuple[list[Assignment], dict[int, list[int]]]:
    """:func:`score_distribution` before titles: the filtered course's assignments shown, in order, and per
    assignment id the learners in each tenth of the points."""
    if filters.course is None:
        return [], {}
    assignments = {a.id: a for a in session.scalars(
        select(Assignment).where(Assignment.course_id == filters.course, Assignment.active,
                                 Assignment.max_score > 0).order_by(Assignment.position, Assignment.id))}
    if not assignments:
        return [], {}
    best = BestScore
    scaled = BUCKETS * case((best.score > 0, best.score), else_=0.0) / Assignment.max_score
    # The tenth as Python's int() of the non-negative ratio: PostgreSQL's cast would round, SQLite's truncates.
    tenth = func.floor(scaled) if session.get_bind().dialect.name == "postgresql" else cast(scaled, Integer)
    query = (select(best.assignment_id, tenth, func.count())
             .join(Assignment, Assignment.id == best.assignment_id)
             .where(best.assignment_id.in_(list(assignments))))
    if any(getattr(filters, key) is not None for key in ("track", "cohort", "company", "region", "industry",
                                                            "job_role", "date_from", "date_to")):
        lc = LearnerCourse
        query = query.where(best.user_id.in_(_where(select(lc.user_id), lc, filters)))
    buckets = {assignment_id: [0] * BUCKETS for assignment_id in assignments}
    for assignment_id, value, learners in session.execute(query.group_by(best.assignment_id, tenth)):
        buckets[assignment_id][min(int(value), BUCKETS - 1)] += learners
    return list(assignments.values()), buckets


def score_distribution(session: Session, filters: Filters, *, locale: str = "ko",
                       buckets: tuple[list[Assignment], dict[int, list[int]]] | None = None) -> list[dict[str, Any]]:
    """For each assignment of the filtered course: how many learners' best graded score falls in each tenth of
    the points.  Empty without a course filter (a track's or the academy's hundreds of assignments say nothing
    at once).  From the best scores kept at the last rebuild (``stats_best_score``).  ``buckets``:
    ``score_buckets`` of the same filters when the caller has them."""
    assignments, counts = score_buckets(session, filters) if buckets is None else buckets
    return [{"assignment": a.id, "title": a.title(locale), "course": a.course.title(locale),
             "buckets": list(counts[a.id]), "learners": sum(counts[a.id])} for a in assignments]


def summary(session: Session, filters: Filters, dimension: str | None, *, locale: str = "ko") -> dict[str, Any]:
    """What ``academy stats --json`` and the API print: ``filters``, ``funnel`` (or ``rows`` with a dimension)."""
    body: dict[str, Any] = {"filters": filters.as_query()}
    if dimension is None:
        body["funnel"] = funnel(session, filters)
        body["completion"] = completion(session, filters)
        body["hours"] = hours_by_profile(session, filters)
    else:
        body["by"] = dimension
        body["rows"] = by(session, dimension, filters, locale=locale)
    return body


def company_options(session: Session) -> list[tuple[int, str]]:
    """Every company, by name (for the filter)."""
    return [(company_id, name) for company_id, name in session.execute(
        select(Company.id, Company.name).order_by(Company.name, Company.id))]
