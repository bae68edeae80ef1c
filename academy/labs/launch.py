"""Opening a lab (the learner's request), the ``academy.start_lab`` job that starts it, and stopping it.

The request only writes the ``LabSession`` row and queues the job; the learner's page reads the
row while the job talks to the hub (starts the server, follows its progress, copies the notebooks).
The job is addressed by the lab's id and safe to run again: for a lab no longer starting it does
nothing, for a server already asked for it follows where the earlier run stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import time
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from academy.audit.services import record as audit
from academy.catalog.models import Assignment, Course
from academy.config import Settings
from academy.db import utcnow
from academy.enrollment.models import Cohort
from academy.errors import PermissionDenied
from academy.i18n import current_locale
from academy.labs import LabRefused, budgets
from academy.labs.hub import HubClient, HubError, HubUnavailable, StartResult, client_for, parse_time
from academy.labs.labels import profile_title
from academy.labs.models import LabSession, LabState
from academy.labs.notebooks import open_notebooks
from academy.labs.profiles import AUTHORING, Profile, configured_profiles
from academy.labs.queue import (
    active_session,
    close_lab,
    closing_values,
    gpu_fits,
    lab_cohort,
    profile_choices,
    quota_for,
    resend_start,
    send_start,
    serve_queue,
)
from academy.oidc.server import hub_username, revoke_all
from academy.permissions import can_manage_course
from academy.users.models import User

log = logging.getLogger(__name__)

FOLLOW_SECONDS = 1.0  # how long one look at the hub's progress stream waits for news
SPAWN_GRACE = dt.timedelta(seconds=3)  # neither pending nor ready this long after the request: it failed


def grant(settings: Settings, hub_user: str, profile: str, device: str, session_id: int) -> str:
    """What the hub checks before it spawns (hub_config/jupyterhub_config.py: grant_signature)."""
    message = f"{hub_user}|{profile}|{device}|{session_id}".encode()
    return hmac.new(settings.resolved_hub_secret("api_token").encode(), message, hashlib.sha256).hexdigest()


# -- the request --------------------------------------------------------------------------------------------------

def launch(session: Session, client: HubClient, settings: Settings, *, user: User, course: Course,
           assignment: Assignment | None, profile_name: str | None = None) -> LabSession:
    """Open ``user``'s lab for ``course`` (optionally on ``assignment``): reuse, queue or start a server.

    Raises LabRefused (not enrolled, unknown profile, quota used up, the cohort's or company's GPU budget
    used up, a GPU profile no device here can hold) before anything is started.  A CPU lab is never
    refused for GPU hours.
    Starting is the ``academy.start_lab`` job's, queued for when the caller commits.
    """
    cohort, profile = _admitted(session, settings, user, course, profile_name)
    current = active_session(session, user.id)
    if current is not None and current.profile == profile.name and (
            current.course_id == course.id or not (profile.uses_gpu or profile.authoring)):
        current.assignment_id = assignment.id if assignment is not None else current.assignment_id
        current.last_seen_at = utcnow()
        if current.state == LabState.running:
            current.notebook_path = None  # the job copies this assignment's notebooks
            current.start_attempts = 0
            resend_start(session, current)
        session.flush()
        return current
    _refuse_if_no_gpu_fits(session, settings, profile)  # before a lab it would replace is stopped
    if current is not None:
        stop_lab(session, client, settings, current, reason="replaced", actor=user)

    lab = LabSession(user_id=user.id, course_id=course.id, assignment_id=assignment.id if assignment else None,
                     cohort_id=cohort.id if cohort is not None else None, hub_user=hub_username(user),
                     profile=profile.name, gpus=profile.gpus, state=LabState.queued, progress_step="queued")
    try:
        with session.begin_nested():
            session.add(lab)
            session.flush()
    except IntegrityError:  # a second tab launched at the same moment: use that one
        existing = active_session(session, user.id)
        if existing is None:
            raise
        return existing
    audit(session, "lab.launch", actor=user, target_type="lab_session", target_id=lab.id, course=course.slug,
          profile=profile.name)
    if profile.uses_gpu:
        serve_queue(session, settings)
    else:
        send_start(session, lab)
    session.flush()
    return lab


def _admitted(session: Session, settings: Settings, user: User, course: Course,
              profile_name: str | None) -> tuple[Cohort | None, Profile]:
    """The cohort and profile of a launch ``user`` may make; LabRefused with the reason otherwise."""
    if profile_name == AUTHORING:
        profile = configured_profiles(settings).get(AUTHORING)
        if profile is None or not can_manage_course(user, course):
            log.warning("lab refused: user %s asked for the authoring lab of course %s", user.id, course.slug)
            raise LabRefused(_("Only the course's instructors can open its authoring lab."))
        return None, profile
    try:
        cohort = lab_cohort(session, user, course)
    except PermissionDenied as exc:
        log.warning("lab refused: user %s is not enrolled in course %s", user.id, course.slug)
        raise LabRefused(str(exc)) from exc
    choices = {p.name: p for p in profile_choices(course, settings)}
    name = profile_name or course.lab_profile
    if name not in choices:
        log.warning("lab refused: user %s asked for profile %r for course %s", user.id, name, course.slug)
        if name in configured_profiles(settings):
            raise LabRefused(_("This course's lab cannot run in the %(title)s.",
                               title=profile_title(settings, name, current_locale())))
        raise LabRefused(_("This lab environment is not available for this course."))
    profile = choices[name]
    if profile.uses_gpu:
        quota = quota_for(session, user, course)
        if quota.exhausted:
            log.warning("lab refused: user %s used up the GPU quota of course %s", user.id, course.slug)
            raise LabRefused(_("You have used all %(hours)s GPU hours of this course. You can still open the lab "
                               "on a CPU.", hours=f"{quota.hours:g}"))
        spent = budgets.exhausted_budget(session, user, cohort)
        if spent is not None:
            log.warning("lab refused: the GPU budget of %s %s is used up (user %s, course %s)", spent.kind,
                        spent.owner_id, user.id, course.slug)
            raise LabRefused(budgets.refusal_message(spent))
    return cohort, profile


def _refuse_if_no_gpu_fits(session: Session, settings: Settings, profile: Profile) -> None:
    """LabRefused, offering the CPU, for a GPU profile that asks more memory than any device here has.

    Such a lab would wait in line for ever; a lab already running is never refused this way.
    """
    if gpu_fits(session, settings, profile):
        return
    log.warning("lab refused: profile %r needs more GPU memory than any device here has", profile.name)
    if profile.gpu_memory_mb is None:
        raise LabRefused(_("No GPU on this server can hold this lab. You can open the lab on a CPU instead."))
    memory = f"{profile.gpu_memory_mb:,}"
    raise LabRefused(_("This lab needs %(memory)s MiB of GPU memory, more than any GPU on this server can give. "
                       "You can open the lab on a CPU instead.", memory=memory))


# -- the start_lab job --------------------------------------------------------------------------------------------

def run_start(session: Session, client: HubClient, settings: Settings, lab_id: int) -> str:
    """The ``academy.start_lab`` job: start the lab's server, follow it, copy the notebooks; the lab's state after.

    This is the job itself, so it commits after each step (the learner's page reads the progress).
    Every change is conditional on the lab still being where the job left it: a lab stopped
    meanwhile stays stopped.  A hub that is down or refuses ends the lab ``failed`` with the reason.
    """
    lab = session.get(LabSession, lab_id)
    if lab is None:
        return "gone"
    try:
        if lab.state == LabState.starting:
            if _claim(session, lab):
                _request_start(session, client, settings, lab)
            _follow(session, client, settings, lab)
        elif lab.state == LabState.running and lab.notebook_path is None:
            _copy_into_running(session, client, lab)
    except HubError as exc:
        session.rollback()
        unavailable = isinstance(exc, HubUnavailable)
        (log.warning if unavailable else log.error)("lab %s: start failed: %s", lab.id, exc)
        _cleanup_on_hub(client, lab)
        _set_if(session, lab, LabState.starting,
                **closing_values(lab, LabState.failed, "hub_down" if unavailable else "spawn_failed", error=str(exc)))
    if lab.state in (LabState.failed, LabState.stopped):
        serve_queue(session, settings)  # the device it held is free for the next in line
        session.commit()
    return lab.state.value


def _set_if(session: Session, lab: LabSession, while_in: LabState, /, **values: Any) -> bool:
    """Write ``values`` to ``lab`` only while it is still in state ``while_in``; commit; True when written."""
    written = session.execute(
        update(LabSession).where(LabSession.id == lab.id, LabSession.state == while_in).values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    session.refresh(lab)
    return bool(written)


def _claim(session: Session, lab: LabSession) -> bool:
    """Take the right to ask the hub for this start: a message delivered twice starts the server once."""
    claimed = session.execute(
        update(LabSession)
        .where(LabSession.id == lab.id, LabSession.state == LabState.starting, LabSession.requested_at.is_(None))
        .values(requested_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    session.refresh(lab)
    return bool(claimed)


def _request_start(session: Session, client: HubClient, settings: Settings, lab: LabSession) -> None:
    options = {"profile": lab.profile, "device": lab.device or "", "session": str(lab.id),
               "grant": grant(settings, lab.hub_user, lab.profile, lab.device or "", lab.id)}
    client.ensure_user(lab.hub_user)
    result = client.start(lab.hub_user, options)
    _set_if(session, lab, LabState.starting, progress=max(lab.progress, 10),
            progress_step="already" if result is StartResult.already_running else "spawning")


def _follow(session: Session, client: HubClient, settings: Settings, lab: LabSession) -> None:
    """Follow the hub's start until the server is ready (then copy the notebooks), fails or runs out of time."""
    limit = dt.timedelta(seconds=settings.lab_spawn_timeout + 30)
    while lab.state == LabState.starting:
        now = utcnow()
        requested = lab.requested_at or now
        server = client.server(lab.hub_user)
        if server.ready:
            _set_if(session, lab, LabState.starting, progress=90, progress_step="copying",
                    started_at=lab.started_at or parse_time(server.started) or now)
            path = open_notebooks(session, client, lab)
            _set_if(session, lab, LabState.starting, state=LabState.running, notebook_path=path, progress=100,
                    progress_step="ready")
            return
        if now - requested > limit:
            _cleanup_on_hub(client, lab)
            _set_if(session, lab, LabState.starting,
                    **closing_values(lab, LabState.failed, "timeout", error="the server did not start in time"))
            return
        if server.pending:
            events = client.progress(lab.hub_user, budget=FOLLOW_SECONDS)
            if events:
                progress = max(lab.progress, min(int(events[-1].get("progress") or 0), 85))
                _set_if(session, lab, LabState.starting, progress=progress,
                        progress_step="waiting" if progress >= 50 else "spawning",
                        progress_message=str(events[-1].get("message") or "")[:500])
            else:
                time.sleep(0.2)
                session.refresh(lab)
        elif now - requested > SPAWN_GRACE:
            # Neither pending nor running: the spawn failed (the hub already cleaned up).
            events = client.progress(lab.hub_user)
            failure = next((e.get("message") for e in reversed(events) if e.get("failed")), None)
            _set_if(session, lab, LabState.starting,
                    **closing_values(lab, LabState.failed, "spawn_failed",
                                     error=failure or "the lab server stopped while starting"))
            return
        else:
            time.sleep(0.2)
            session.refresh(lab)


def _copy_into_running(session: Session, client: HubClient, lab: LabSession) -> None:
    """A running lab reopened on another assignment: its notebooks go in; a hub error opens the lab home."""
    try:
        path = open_notebooks(session, client, lab)
    except HubError as exc:
        log.warning("lab %s: could not copy the notebooks: %s", lab.id, exc)
        path = ""
    _set_if(session, lab, LabState.running, notebook_path=path)


def _cleanup_on_hub(client: HubClient, lab: LabSession) -> None:
    """Nothing half-started stays behind: ask the hub to stop whatever it has for this person."""
    with contextlib.suppress(HubError):
        client.stop(lab.hub_user)


# -- stopping -----------------------------------------------------------------------------------------------------

def stop_lab(session: Session, client: HubClient | None, settings: Settings, lab: LabSession, *, reason: str,
             actor: User | None, at: dt.datetime | None = None) -> LabSession:
    """Stop a lab (or leave the queue), and hand a freed GPU to the next in line.

    The row is closed first (with who stopped it and why), then the hub is asked; the hub's own stop
    event that follows finds nothing left to close.  A hub that is down or refuses leaves a server the
    sweep stops later (servers without an open session are stopped there); the GPU is free at once.
    """
    was_running = lab.state in (LabState.starting, LabState.running)
    close_lab(lab, LabState.cancelled if lab.state == LabState.queued else LabState.stopped, reason, at=at)
    audit(session, "lab.stop", actor=actor, target_type="lab_session", target_id=lab.id,
          reason=reason, user=lab.user_id)
    session.flush()
    if was_running and client is not None:
        try:
            client.stop(lab.hub_user)
        except HubError as exc:
            log.warning("lab %s: the hub did not stop the server (%s); the lab sweep will", lab.id, exc)
    if was_running and lab.device is not None:
        serve_queue(session, settings)
    return lab


# -- the learner's hub account ------------------------------------------------------------------------------------

def sign_out_of_hub(session: Session, settings: Settings, user: User) -> str | None:
    """Revoke the hub's tokens for ``user``; returns the hub's logout URL to pass through, if any."""
    revoke_all(user.id)
    if not settings.labs_enabled:
        return None
    used_lab = session.scalar(select(func.count(LabSession.id)).where(LabSession.user_id == user.id))
    if not used_lab:
        return None
    client = client_for(settings)
    try:
        client.delete_tokens(hub_username(user))
    except HubError as exc:
        log.warning("sign-out: could not reach the hub to end %s's lab session: %s", user.id, exc)
        return None
    return client.logout_url()

