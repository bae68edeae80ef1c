"""Metering and housekeeping: the hub's start/stop events, the periodic lab sweep, GPU quota warnings.

Functions flush; the view (hub events) or the job (the sweep) that called them commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from academy.catalog.models import Course
from academy.config import Settings
from academy.db import utcnow
from academy.labs import budgets
from academy.labs.hub import HubClient, parse_time
from academy.labs.launch import stop_lab
from academy.labs.models import ACTIVE_STATES, LabSession, LabState
from academy.labs.queue import close_lab, gpu_hours_used, resend_start, serve_queue
from academy.oidc.server import user_id_from_hub_name
from academy.users.models import User

log = logging.getLogger(__name__)

MAX_START_SENDS = 3  # start_lab messages sent for one lab before it is given up as failed
LOST_MESSAGE_AFTER = dt.timedelta(seconds=30)  # a start not picked up this long: its message was lost


def record_hub_event(session: Session, settings: Settings, event: dict[str, Any]) -> bool:
    """A start/stop event from the hub (hub_config: PortalEventHandler). Returns True when it changed a lab."""
    action = event.get("event")
    hub_user = str(event.get("user") or "")
    if action not in ("start", "stop") or user_id_from_hub_name(hub_user) is None or event.get("server"):
        return False
    at = parse_time(str(event.get("time") or "")) or utcnow()
    lab = session.scalar(select(LabSession).where(LabSession.hub_user == hub_user,
                                                  LabSession.state.in_((LabState.starting, LabState.running)))
                         .order_by(LabSession.id.desc()))
    if lab is None:
        return False
    if action == "start":
        if lab.started_at is None:
            lab.started_at = at
        session.flush()
        return True
    # Conditional: the portal may have closed this row (with its own reason) since it was read.
    closed = session.execute(
        update(LabSession)
        .where(LabSession.id == lab.id, LabSession.state.in_((LabState.starting, LabState.running)))
        .values(state=LabState.stopped, stop_reason=func.coalesce(LabSession.stop_reason, "hub"),
                stopped_at=max(at, lab.started_at) if lab.started_at else at)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not closed:
        return False
    session.expire(lab)
    serve_queue(session, settings)
    return True


@dataclass
class SweepReport:
    stopped_gone: int = 0
    stopped_orphans: int = 0
    warned: int = 0
    stopped_quota: int = 0
    warned_budget: int = 0
    stopped_budget: int = 0
    cancelled_budget: int = 0  # places in the GPU line whose budget ran out
    expired_waiting: int = 0
    resent_starts: int = 0


def sweep(session: Session, client: HubClient, settings: Settings, *, now: dt.datetime | None = None) -> SweepReport:
    """Periodic housekeeping (Celery beat): reconcile with the hub, enforce GPU quotas and the cohorts' and
    companies' GPU budgets, expire the queue, re-send starts whose message was lost."""
    now = now or utcnow()
    report = SweepReport()
    running = client.running_servers()
    for lab in session.scalars(select(LabSession).where(LabSession.state == LabState.running)):
        if lab.hub_user not in running:
            close_lab(lab, LabState.stopped, "hub", at=now)
            report.stopped_gone += 1
    session.flush()
    # A server no open session accounts for (a stop the hub missed): it would hold a GPU unseen.
    accounted = set(session.scalars(select(LabSession.hub_user).where(LabSession.state.in_(ACTIVE_STATES))))
    for name in running:
        if user_id_from_hub_name(name) is not None and name not in accounted:
            log.warning("lab sweep: stopping %s's server, which no open lab session accounts for", name)
            client.stop(name)
            report.stopped_orphans += 1
    _enforce_quotas(session, client, settings, now, report)
    session.flush()
    _enforce_budgets(session, client, settings, now, report)
    ttl = dt.timedelta(seconds=settings.lab_queue_ttl_seconds)
    waiting = select(LabSession).where(or_(LabSession.state == LabState.queued, and_(
        LabSession.state == LabState.starting, LabSession.requested_at.is_(None))))
    for lab in session.scalars(waiting):
        if now - lab.last_seen_at > ttl:
            close_lab(lab, LabState.cancelled, "left_queue", at=now)
            report.expired_waiting += 1
    report.resent_starts = resend_lost_starts(session, settings, now=now)
    session.flush()
    serve_queue(session, settings)
    return report


def _enforce_quotas(session: Session, client: HubClient, settings: Settings, now: dt.datetime,
                    report: SweepReport) -> None:
    from academy.inbox.services import tell

    for lab in session.scalars(select(LabSession).where(LabSession.state == LabState.running, LabSession.gpus > 0)):
        course = session.get(Course, lab.course_id)
        if course is None or not course.gpu_hour_quota:
            continue
        used = gpu_hours_used(session, lab.user_id, lab.course_id, now=now)
        left_minutes = (course.gpu_hour_quota - used) * 60
        if left_minutes <= 0:
            stop_lab(session, client, settings, lab, reason="quota", actor=None, at=now)
            report.stopped_quota += 1
        elif left_minutes <= settings.lab_quota_warning_minutes and lab.warned_at is None:
            lab.warned_at = now
            user = session.get(User, lab.user_id)
            if user is not None:
                with force_locale(user.locale or "ko"):  # the learner's language
                    tell(session, user, "lab_quota", _("Your GPU time is almost used up"),
                         _("Your lab for %(course)s will be stopped in about %(minutes)d minutes, when your "
                           "GPU hours for the course are used up. Save your work now.",
                           course=course.title(user.locale or "ko"), minutes=max(int(left_minutes), 1)),
                         link=f"/courses/{course.slug}")
            report.warned += 1


def _enforce_budgets(session: Session, client: HubClient, settings: Settings, now: dt.datetime,
                     report: SweepReport) -> None:
    """Cohort and company GPU budgets (``academy.labs.budgets``): warn each running GPU lab once when its
    budget runs out within ``lab_quota_warning_minutes`` (every lab under it burning at once), stop the
    GPU labs and cancel the places in the GPU line of a budget used up, and tell the learners why."""
    plan = budgets.plan_sweep(session, now=now, warning_minutes=settings.lab_quota_warning_minutes)
    # Places in line first: a GPU freed by a stop below must not go to a lab whose budget is used up.
    for lab, budget in plan.cancel:
        close_lab(lab, LabState.cancelled, "budget", at=now)
        report.cancelled_budget += 1
        _tell_budget(session, lab, budget, "cancel")
    for lab, budget in plan.stop:
        stop_lab(session, client, settings, lab, reason="budget", actor=None, at=now)
        report.stopped_budget += 1
        _tell_budget(session, lab, budget, "stop")
    for lab, budget in plan.warn:
        if _tell_budget(session, lab, budget, "warn"):  # once per lab and budget: the inbox keeps the key
            report.warned_budget += 1
    session.flush()


def _tell_budget(session: Session, lab: LabSession, budget: budgets.Budget, what: str) -> bool:
    """Tell the learner (in their language) that ``budget`` stops their lab soon (``warn``), stopped it
    (``stop``) or took their place in the GPU line (``cancel``).  False when they were told already."""
    from academy.inbox.services import tell

    user = session.get(User, lab.user_id)
    course = session.get(Course, lab.course_id)
    if user is None or course is None:
        return False
    locale = user.locale or "ko"
    with force_locale(locale):
        names = {"budget": budget.title(), "course": course.title(locale)}
        if what == "warn":
            subject = _("The GPU budget is almost used up")
            body = _("The GPU-hour budget of %(budget)s runs out in about %(minutes)d minutes; your lab for "
                     "%(course)s will then be stopped. Save your work now. You can go on in a lab on a CPU.",
                     minutes=max(round(budget.minutes_left or 0), 1), **names)
        elif what == "stop":
            subject = _("Your GPU lab was stopped: the GPU budget is used up")
            body = _("Your lab for %(course)s was stopped because the GPU-hour budget of %(budget)s is used up. "
                     "Your files are kept. You can open the lab on a CPU and go on working.", **names)
        else:
            subject = _("Your place in line for a GPU was given up: the GPU budget is used up")
            body = _("You were waiting for a GPU for the lab of %(course)s, but the GPU-hour budget of %(budget)s "
                     "is used up, so it cannot start. You can open the lab on a CPU instead.", **names)
        key = f"lab-budget-{what}:{lab.id}" + (f":{budget.kind}:{budget.owner_id}" if what == "warn" else "")
        return tell(session, user, "lab_quota", subject, body, link=f"/courses/{course.slug}", key=key) is not None


def resend_lost_starts(session: Session, settings: Settings, *, now: dt.datetime | None = None) -> int:
    """Re-send ``academy.start_lab`` for labs whose job never finished: a message nobody picked up, or a job
    whose worker died.  After ``MAX_START_SENDS`` sends a starting lab fails (the learner can open it
    again) and a running one whose notebooks were never copied opens on the lab's home."""
    now = now or utcnow()
    following = dt.timedelta(seconds=settings.lab_spawn_timeout + 60)
    resent = 0
    stuck = select(LabSession).where(or_(LabSession.state == LabState.starting, and_(
        LabSession.state == LabState.running, LabSession.notebook_path.is_(None))))
    for lab in session.scalars(stuck):
        grace = following if lab.state == LabState.starting and lab.requested_at is not None else LOST_MESSAGE_AFTER
        if lab.start_sent_at is not None and now - lab.start_sent_at < grace:
            continue
        if (lab.start_attempts or 0) >= MAX_START_SENDS:
            log.error("lab %s: no start_lab job finished after %d sends; giving up", lab.id, lab.start_attempts)
            if lab.state == LabState.running:
                lab.notebook_path = ""
            else:
                close_lab(lab, LabState.failed, "start_lost", error="the start job did not run", at=now)
            continue
        log.warning("lab %s: re-sending start_lab (its message or worker was lost)", lab.id)
        resend_start(session, lab, now=now)  # a start already asked of the hub is followed, not asked again
        resent += 1
    return resent


def quota_warning(session: Session, lab: LabSession, settings: Settings) -> float | None:
    """Minutes of GPU time left when the running lab is close to its quota (for the page), else None."""
    if lab.state != LabState.running or not lab.gpus:
        return None
    course = session.get(Course, lab.course_id)
    if course is None or not course.gpu_hour_quota:
        return None
    left = (course.gpu_hour_quota - gpu_hours_used(session, lab.user_id, lab.course_id)) * 60
    return left if left <= settings.lab_quota_warning_minutes else None
