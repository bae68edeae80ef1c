"""GPU-hour budgets of cohorts and companies: hours used, what is left, which budgets a lab falls under,
and what the lab sweep warns about or stops.

Besides each course's per-learner quota (``academy.labs.queue.quota_for``), an admin may give a cohort
and a company a budget of GPU-hours (``Cohort.gpu_budget_hours``, ``Company.gpu_budget_hours``; None:
no budget, 0: no GPU lab at all):

* a **cohort's** budget counts every GPU lab opened through the cohort (``LabSession.cohort_id``, set
  at launch for a learner enrolled in the cohort and taking one of its track's courses), for as long
  as the cohort exists: a cohort is one run of a track, funded once;
* a **company's** budget counts the GPU labs of its employees (``User.company_id``) in any course, per
  calendar year in Asia/Seoul (1 January to 31 December, the fiscal year of the province's programme):
  it starts afresh each year, and a lab running across New Year counts in each year for its part.

A GPU-hour is what the quota counts: an hour of a GPU lab from the hub's start to its stop, times its
GPUs (a seat on a shared device counts as one GPU).  Labs still running count up to ``now``.  Sums are
computed in SQL, grouped by budget.  Functions only read and flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from sqlalchemy import ColumnElement, case, extract, func, literal, or_, select
from sqlalchemy.orm import Session

from academy.audit.services import record as audit
from academy.db import UTCDateTime, utcnow
from academy.enrollment.models import Cohort, Enrollment
from academy.errors import ValidationFailed
from academy.labs.models import LabSession, LabState
from academy.users.models import Company, User

SEOUL = ZoneInfo("Asia/Seoul")
COHORT = "cohort"
COMPANY = "company"
MAX_BUDGET_HOURS = 10_000_000.0  # more than any data centre has; a typo of extra zeros is refused


@dataclass
class Budget:
    """One cohort's or company's GPU-hour budget and its use up to ``now``."""

    kind: str  # COHORT or COMPANY
    owner: Any  # the Cohort or the Company
    hours: float
    used: float
    running: int = 0  # GPU labs running under it now
    running_gpus: int = 0  # the GPUs they hold: hours burn this many times faster than the clock
    period_start: dt.datetime | None = None  # None: since the cohort began (a company's: 1 January, Seoul)
    period_end: dt.datetime | None = None

    @property
    def owner_id(self) -> int:
        return int(self.owner.id)

    @property
    def name(self) -> str:
        """The cohort's or the company's name."""
        return str(self.owner.name)

    @property
    def key(self) -> tuple[str, int]:
        return (self.kind, self.owner_id)

    @property
    def remaining(self) -> float:
        return max(self.hours - self.used, 0.0)

    @property
    def exhausted(self) -> bool:
        """No hours left (to the millisecond): GPU labs under it are refused and stopped."""
        return self.used >= self.hours - 1e-6

    @property
    def percent(self) -> float:
        """How much of it is used (100 for a budget of 0 hours)."""
        return 100.0 if self.hours <= 0 else self.used / self.hours * 100.0

    @property
    def minutes_left(self) -> float | None:
        """Minutes until it is used up with every GPU lab under it running on; None when none runs."""
        if not self.running_gpus:
            return None
        return self.remaining * 60.0 / self.running_gpus

    @property
    def year(self) -> int | None:
        """A company budget's calendar year (Seoul)."""
        return self.period_start.astimezone(SEOUL).year if self.period_start is not None else None

    def title(self) -> str:
        """The budget in words, in the current language ("the cohort X", "the company Y")."""
        if self.kind == COHORT:
            return _("the cohort %(name)s", name=self.name)
        return _("the company %(name)s", name=self.name)


def company_period(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The calendar year (Asia/Seoul) holding ``now``, as UTC instants: a company budget's period."""
    year = now.astimezone(SEOUL).year
    start = dt.datetime(year, 1, 1, tzinfo=SEOUL).astimezone(dt.UTC)
    end = dt.datetime(year + 1, 1, 1, tzinfo=SEOUL).astimezone(dt.UTC)
    return start, end


# -- hours used, in SQL -------------------------------------------------------------------------------------------

def _seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    """Seconds from ``start`` to ``end`` (UTC datetime expressions), on PostgreSQL and on SQLite (text).

    SQLite's Julian days carry about 40 µs of rounding: the difference is rounded to the millisecond, so
    that labs of whole hours add up to whole hours.
    """
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", end) - extract("epoch", start)
    return func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3)


def _gpu_seconds(session: Session, now: dt.datetime, since: dt.datetime | None) -> ColumnElement[float]:
    """A lab's GPU-seconds from ``since`` (None: its start) to its stop or ``now``, whichever is first."""
    at_now = literal(now, UTCDateTime())
    end = case((or_(LabSession.stopped_at.is_(None), LabSession.stopped_at > at_now), at_now),
               else_=LabSession.stopped_at)
    start: Any = LabSession.started_at
    if since is not None:
        at_since = literal(since, UTCDateTime())
        start = case((LabSession.started_at < at_since, at_since), else_=LabSession.started_at)
    return case((end > start, _seconds_between(session, start, end) * LabSession.gpus), else_=0.0)


def _usage(session: Session, owner: Any, ids: set[int], now: dt.datetime,
           since: dt.datetime | None) -> dict[int, tuple[float, int, int]]:
    """Per owner id (``owner`` is ``LabSession.cohort_id`` or ``User.company_id``): GPU-hours used,
    GPU labs running, GPUs they hold."""
    if not ids:
        return {}
    running = LabSession.state == LabState.running
    query = (select(owner, func.sum(_gpu_seconds(session, now, since)),
                    func.sum(case((running, 1), else_=0)), func.sum(case((running, LabSession.gpus), else_=0)))
             .where(owner.in_(ids), LabSession.gpus > 0, LabSession.started_at.is_not(None),
                    LabSession.started_at < literal(now, UTCDateTime()))
             .group_by(owner))
    if owner is User.company_id:
        query = query.join(User, User.id == LabSession.user_id)
    else:
        # A cohort's labs are its learners' (launch takes the cohort from an enrollment, and enrollment rows are
        # kept when a learner withdraws or moves): their user ids reach the labs through indexes.
        query = query.where(LabSession.user_id.in_(select(Enrollment.user_id).where(Enrollment.cohort_id.in_(ids))))
    if since is not None:
        query = query.where(or_(LabSession.stopped_at.is_(None), LabSession.stopped_at > literal(since, UTCDateTime())))
    return {row[0]: (float(row[1] or 0.0) / 3600.0, int(row[2] or 0), int(row[3] or 0))
            for row in session.execute(query)}


def budgets_for(session: Session, *, cohorts: Iterable[int] | None = None, companies: Iterable[int] | None = None,
                now: dt.datetime | None = None) -> dict[tuple[str, int], Budget]:
    """The budgets of these cohorts and companies (None: all that have one) with their use up to ``now``.

    Cohorts and companies without a budget are left out.  One query for the owners and one for the
    use of each kind, whatever the number of labs.
    """
    now = now or utcnow()
    cohorts = None if cohorts is None else set(cohorts)
    companies = None if companies is None else set(companies)
    out: dict[tuple[str, int], Budget] = {}
    cohort_query = select(Cohort).where(Cohort.gpu_budget_hours.is_not(None))
    if cohorts is not None:
        cohort_query = cohort_query.where(Cohort.id.in_(cohorts))
    cohort_rows = list(session.scalars(cohort_query)) if cohorts is None or cohorts else []
    used = _usage(session, LabSession.cohort_id, {c.id for c in cohort_rows}, now, None)
    for cohort in cohort_rows:
        hours, running, gpus = used.get(cohort.id, (0.0, 0, 0))
        out[(COHORT, cohort.id)] = Budget(COHORT, cohort, float(cohort.gpu_budget_hours or 0.0), hours, running, gpus)
    company_query = select(Company).where(Company.gpu_budget_hours.is_not(None))
    if companies is not None:
        company_query = company_query.where(Company.id.in_(companies))
    company_rows = list(session.scalars(company_query)) if companies is None or companies else []
    start, end = company_period(now)
    used = _usage(session, User.company_id, {c.id for c in company_rows}, now, start)
    for company in company_rows:
        hours, running, gpus = used.get(company.id, (0.0, 0, 0))
        out[(COMPANY, company.id)] = Budget(COMPANY, company, float(company.gpu_budget_hours or 0.0), hours,
                                            running, gpus, period_start=start, period_end=end)
    return out


def all_budgets(session: Session, *, now: dt.datetime | None = None) -> list[Budget]:
    """Every budget set, the most used first (the admins' table)."""
    rows = budgets_for(session, now=now).values()
    return sorted(rows, key=lambda b: (-b.percent, b.kind, b.name))


def budget_of(session: Session, owner: Cohort | Company, *, now: dt.datetime | None = None) -> Budget | None:
    """``owner``'s budget and its use; None when it has none."""
    key = (COHORT if isinstance(owner, Cohort) else COMPANY, owner.id)
    found = budgets_for(session, cohorts=[owner.id] if key[0] == COHORT else [],
                        companies=[owner.id] if key[0] == COMPANY else [], now=now)
    return found.get(key)


# -- labs under budgets -------------------------------------------------------------------------------------------

def launch_budgets(session: Session, user: User, cohort: Cohort | None, *,
                   now: dt.datetime | None = None) -> list[Budget]:
    """The budgets a GPU lab that ``user`` opens through ``cohort`` (None: as staff) would count against."""
    found = budgets_for(session, cohorts=[cohort.id] if cohort is not None else [],
                        companies=[user.company_id] if user.company_id is not None else [], now=now)
    return list(found.values())


def exhausted_budget(session: Session, user: User, cohort: Cohort | None, *,
                     now: dt.datetime | None = None) -> Budget | None:
    """The used-up budget that refuses ``user`` a GPU lab through ``cohort``, if any (a CPU lab never is)."""
    return next((b for b in launch_budgets(session, user, cohort, now=now) if b.exhausted), None)


def refusal_message(budget: Budget) -> str:
    """What a learner refused a GPU lab under ``budget`` reads (the page offers the CPU beside it)."""
    return _("The GPU-hour budget of %(budget)s is used up, so no GPU lab can be opened under it now. You can "
             "still open the lab on a CPU.", budget=budget.title())


def lab_budget_warning(session: Session, lab: LabSession, *, warning_minutes: int,
                       now: dt.datetime | None = None) -> tuple[float, Budget] | None:
    """Minutes left, and the budget, when the running GPU lab's budget runs out within ``warning_minutes``."""
    if lab.state != LabState.running or not lab.gpus:
        return None
    company_id = session.scalar(select(User.company_id).where(User.id == lab.user_id))
    found = budgets_for(session, cohorts=[lab.cohort_id] if lab.cohort_id else [],
                        companies=[company_id] if company_id else [], now=now)
    soon = [(minutes, b) for b in found.values()
            if (minutes := b.minutes_left) is not None and minutes <= warning_minutes]
    return min(soon, key=lambda item: item[0]) if soon else None


@dataclass
class SweepPlan:
    """What the lab sweep does about budgets: each entry is a lab and the budget that decides it."""

    stop: list[tuple[LabSession, Budget]] = field(default_factory=list)  # running, budget used up
    warn: list[tuple[LabSession, Budget]] = field(default_factory=list)  # running, runs out within the warning
    cancel: list[tuple[LabSession, Budget]] = field(default_factory=list)  # waiting for a GPU, budget used up


def plan_sweep(session: Session, *, now: dt.datetime, warning_minutes: int) -> SweepPlan:
    """Decide, at ``now``, which GPU labs to stop (their budget is used up), which to warn (it runs out
    within ``warning_minutes`` with every GPU lab under it running on) and which places in the GPU line
    to cancel (their budget is used up: starting them would spend hours nobody has)."""
    rows = session.execute(
        select(LabSession, User.company_id).join(User, User.id == LabSession.user_id)
        .where(LabSession.gpus > 0, LabSession.state.in_((LabState.queued, LabState.running)))
        .order_by(LabSession.id)).all()
    plan = SweepPlan()
    if not rows:
        return plan
    found = budgets_for(session, cohorts={lab.cohort_id for lab, _c in rows if lab.cohort_id},
                        companies={c for _lab, c in rows if c}, now=now)
    for lab, company_id in rows:
        mine = [b for b in (found.get((COHORT, lab.cohort_id or 0)), found.get((COMPANY, company_id or 0)))
                if b is not None]
        spent = next((b for b in mine if b.exhausted), None)
        if lab.state == LabState.queued:
            if spent is not None:
                plan.cancel.append((lab, spent))
            continue
        if spent is not None:
            plan.stop.append((lab, spent))
            continue
        soon = [b for b in mine if b.minutes_left is not None and b.minutes_left <= warning_minutes]
        if soon:
            plan.warn.append((lab, min(soon, key=lambda b: b.minutes_left or 0.0)))
    return plan


# -- setting a budget (admins) ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetChange:
    """A budget set or cleared: before and after (``after`` None: no budget now)."""

    previous: float | None
    after: Budget | None


def check_hours(hours: float | None) -> float | None:
    """``hours`` as a budget: None (no budget) or a finite number of hours ≥ 0.  Raises ValidationFailed."""
    if hours is None:
        return None
    if not math.isfinite(hours) or hours < 0 or hours > MAX_BUDGET_HOURS:
        raise ValidationFailed(_("Enter a number of GPU hours of 0 or more (at most %(max)s), or leave it empty "
                                 "for no budget.", max=f"{MAX_BUDGET_HOURS:,.0f}"), field="hours")
    return round(float(hours), 2)


def set_budget(session: Session, owner: Cohort | Company, hours: float | None, *, actor: User | None,
               below_used_ok: bool = False, now: dt.datetime | None = None) -> BudgetChange:
    """Give ``owner`` (a cohort or a company) a GPU-hour budget, or none (``hours`` None).

    Raises ValidationFailed (``field="hours"``) for hours that are not a number ≥ 0, and for a budget
    at or below the hours already used under it (every GPU lab under it would be stopped at once and
    new ones refused) unless ``below_used_ok``: the admin confirms that this is what they mean.
    Audited as ``cohort.set_gpu_budget`` or ``company.set_gpu_budget``.
    """
    now = now or utcnow()
    hours = check_hours(hours)
    previous = owner.gpu_budget_hours
    kind = COHORT if isinstance(owner, Cohort) else COMPANY
    current = use_of(session, owner, now)
    used_up_at_once = hours is not None and hours <= current.used and (current.used > 0 or current.running > 0)
    if used_up_at_once and not below_used_ok:
        raise ValidationFailed(_(
            "%(used)s GPU hours are already used under this budget, so a budget of %(hours)s hours is used up at "
            "once: the %(running)d GPU labs running under it would be stopped within a minute and new GPU labs "
            "refused (learners are offered the CPU). Enter more hours, or tick “%(confirm)s” and save again.",
            used=f"{current.used:,.2f}", hours=f"{hours or 0:,.2f}", running=current.running,
            confirm=below_used_label()), field="hours")
    owner.gpu_budget_hours = hours
    session.flush()
    after = budget_of(session, owner, now=now)
    extra: dict[str, Any] = {"company": owner.name} if kind == COMPANY else {}
    action = "cohort.set_gpu_budget" if kind == COHORT else "company.set_gpu_budget"
    audit(session, action, actor=actor, target_type=kind, target_id=owner.id,
          gpu_budget_hours=hours, previous_gpu_budget_hours=previous,
          gpu_hours_used=round(current.used, 2), **extra)
    return BudgetChange(previous=previous, after=after)


def below_used_label() -> str:
    """The admin's confirmation that a budget may be set at or below what is already used."""
    return _("Save even at or below the hours already used (its GPU labs stop)")


def use_of(session: Session, owner: Cohort | Company, now: dt.datetime) -> Budget:
    """``owner``'s use as if it had a budget (of its current hours, or 0): for checking a new budget."""
    if isinstance(owner, Cohort):
        hours, running, gpus = _usage(session, LabSession.cohort_id, {owner.id}, now, None).get(owner.id, (0, 0, 0))
        return Budget(COHORT, owner, 0.0, hours, running, gpus)
    start, end = company_period(now)
    hours, running, gpus = _usage(session, User.company_id, {owner.id}, now, start).get(owner.id, (0, 0, 0))
    return Budget(COMPANY, owner, 0.0, hours, running, gpus, period_start=start, period_end=end)
