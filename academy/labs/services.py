"""Launching, following and stopping labs; the fair GPU queue; GPU-hour quotas and metering.

Plain functions over a SQLAlchemy session and a ``HubClient``.  The database is the source of
truth for who holds which GPU and who waits, so a portal restart loses no place in line.  These
functions commit at the points where they are about to act on the hub, so that what the hub
does is never ahead of what the database says.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import posixpath
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from academy.audit.services import record as audit
from academy.catalog.models import Assignment, Course
from academy.config import Settings
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import AcademyError, PermissionDenied
from academy.labs import gpu
from academy.labs.hub import HubClient, HubError, HubUnavailable
from academy.labs.models import ACTIVE_STATES, GpuDevice, LabSession, LabState
from academy.labs.profiles import Profile, load_profiles
from academy.oidc.server import hub_username, revoke_all, user_id_from_hub_name
from academy.permissions import can_manage_course
from academy.users.models import User

log = logging.getLogger(__name__)


class LabRefused(AcademyError):
    """A launch the portal will not make; the message tells the learner why and what to do."""


_profile_cache: dict[str, tuple[float, dict[str, Profile]]] = {}


def profiles(settings: Settings) -> dict[str, Profile]:
    path = settings.lab_profiles_file
    mtime = path.stat().st_mtime if path.exists() else 0.0
    cached = _profile_cache.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_profiles(path))
        _profile_cache[str(path)] = cached
    return cached[1]


def client_for(settings: Settings) -> HubClient:
    if not settings.labs_enabled:
        raise HubUnavailable("labs are not configured (ACADEMY_HUB_URL is not set)")
    return HubClient(settings.hub_url or "", settings.resolved_hub_secret("api_token"))


def grant(settings: Settings, hub_user: str, profile: str, device: str, session_id: int) -> str:
    """What the hub checks before it spawns (hub_config/jupyterhub_config.py: grant_signature)."""
    message = f"{hub_user}|{profile}|{device}|{session_id}".encode()
    return hmac.new(settings.resolved_hub_secret("api_token").encode(), message, hashlib.sha256).hexdigest()


# -- who may launch what ------------------------------------------------------------------------------------------

def lab_cohort(session: Session, user: User, course: Course) -> Cohort | None:
    """The cohort through which ``user`` takes ``course``; None for the course's staff.

    Raises PermissionDenied for anyone else.
    """
    cohort = session.scalar(
        select(Cohort).join(Enrollment, Enrollment.cohort_id == Cohort.id)
        .where(Enrollment.user_id == user.id, Enrollment.status == EnrollmentStatus.enrolled,
               Cohort.track_id == course.track_id)
        .order_by(Cohort.starts_at.desc()).limit(1)
    )
    if cohort is not None:
        return cohort
    if can_manage_course(user, course):
        return None
    raise PermissionDenied(_("Only learners enrolled in this course and its instructors can open its lab."))


def profile_choices(course: Course, settings: Settings) -> list[Profile]:
    """The course's profile, and CPU (always allowed, the way out of a GPU queue)."""
    known = profiles(settings)
    names = [course.lab_profile] + (["cpu"] if course.lab_profile != "cpu" else [])
    return [known[name] for name in names if name in known]


def gpu_hours_used(session: Session, user_id: int, course_id: int, *, now: dt.datetime | None = None) -> float:
    rows = session.scalars(select(LabSession).where(
        LabSession.user_id == user_id, LabSession.course_id == course_id, LabSession.gpus > 0,
        LabSession.started_at.is_not(None)))
    return sum(row.gpu_seconds(now) for row in rows) / 3600.0


@dataclass
class Quota:
    hours: float
    used: float

    @property
    def left(self) -> float:
        return max(self.hours - self.used, 0.0)

    @property
    def exhausted(self) -> bool:
        return self.hours > 0 and self.used >= self.hours


def quota_for(session: Session, user: User, course: Course) -> Quota:
    return Quota(hours=float(course.gpu_hour_quota or 0.0), used=gpu_hours_used(session, user.id, course.id))


# -- the GPU inventory and the fair queue -------------------------------------------------------------------------

def sync_inventory(session: Session, settings: Settings) -> list[GpuDevice]:
    """Bring the device table in line with NVML or the configured list; devices gone are kept, not present."""
    found = {d.index: d for d in gpu.inventory(settings.gpu_devices)}
    rows = {row.index: row for row in session.scalars(select(GpuDevice))}
    now = utcnow()
    for index, device in found.items():
        row = rows.get(index)
        if row is None:
            row = GpuDevice(index=index, name=device.name, memory_mb=device.memory_mb, source=device.source)
            session.add(row)
            rows[index] = row
        row.name, row.memory_mb, row.source, row.present, row.seen_at = (
            device.name, device.memory_mb, device.source, True, now)
    for index, row in rows.items():
        if index not in found:
            row.present = False
    session.flush()
    return [rows[i] for i in sorted(rows) if rows[i].present]


def device_load(session: Session, shared_profiles: set[str]) -> dict[str, tuple[int, int]]:
    """For each device in use: (exclusive holders, shared holders)."""
    load: dict[str, tuple[int, int]] = {}
    holders = session.execute(select(LabSession.device, LabSession.profile).where(
        LabSession.device.is_not(None), LabSession.state.in_((LabState.starting, LabState.running))))
    for device, profile in holders:
        exclusive, shared = load.get(device, (0, 0))
        if profile in shared_profiles:
            shared += 1
        else:
            exclusive += 1
        load[device] = (exclusive, shared)
    return load


def cluster_gpus(settings: Settings) -> bool:
    """``ACADEMY_GPU_DEVICES=cluster``: the hub's cluster (Kubernetes, Slurm) hands out GPUs, not the portal."""
    return (settings.gpu_devices or "").strip().lower() == "cluster"


def free_device(session: Session, settings: Settings, profile: Profile) -> str | None:
    """A device ``profile`` may take now, or None when every device is busy.

    ``""`` means "start without a local device": the cluster chooses one, or this machine has no GPU
    at all and the lab runs on the CPU.
    """
    if cluster_gpus(settings):
        return ""
    devices = sync_inventory(session, settings)
    if not devices:
        return ""
    load = device_load(session, {p.name for p in profiles(settings).values() if p.shared})
    if profile.shared:
        # Fill a device already shared before opening another, so whole GPUs stay free for exclusive use.
        candidates = [(-load.get(d.index, (0, 0))[1], d.index) for d in devices
                      if load.get(d.index, (0, 0))[0] == 0 and load.get(d.index, (0, 0))[1] < profile.per_device]
    else:
        candidates = [(0, d.index) for d in devices if load.get(d.index, (0, 0)) == (0, 0)]
    return min(candidates)[1] if candidates else None


def waiting_line(session: Session) -> list[LabSession]:
    """Everyone waiting for a GPU, in the order they are served.

    First come, first served within each cohort, and cohorts take turns: the first waiter of every
    cohort comes before the second waiter of any cohort, so one large class arriving together cannot
    starve a small one.
    """
    waiting = list(session.scalars(select(LabSession).where(LabSession.state == LabState.queued)
                                   .order_by(LabSession.queued_at, LabSession.id)))
    rank: dict[int | None, int] = {}
    keyed = []
    for row in waiting:
        rank[row.cohort_id] = rank.get(row.cohort_id, 0) + 1
        keyed.append(((rank[row.cohort_id], row.queued_at, row.id), row))
    return [row for _key, row in sorted(keyed, key=lambda item: item[0])]


def place_in_line(session: Session, lab: LabSession) -> int | None:
    for position, row in enumerate(waiting_line(session), start=1):
        if row.id == lab.id:
            return position
    return None


# -- launching ----------------------------------------------------------------------------------------------------

def active_session(session: Session, user_id: int) -> LabSession | None:
    return session.scalar(select(LabSession).where(LabSession.user_id == user_id,
                                                   LabSession.state.in_(ACTIVE_STATES)))


def launch(session: Session, client: HubClient, settings: Settings, *, user: User, course: Course,
           assignment: Assignment | None, profile_name: str | None = None) -> LabSession:
    """Open ``user``'s lab for ``course`` (optionally on ``assignment``): reuse, queue or start a server.

    Raises LabRefused (not enrolled, unknown profile, quota used up) before anything is started;
    a hub that cannot be reached gives a session in state ``failed`` with the reason.
    """
    try:
        cohort = lab_cohort(session, user, course)
    except PermissionDenied as exc:
        log.warning("lab refused: user %s is not enrolled in course %s", user.id, course.slug)
        raise LabRefused(str(exc)) from exc
    choices = {p.name: p for p in profile_choices(course, settings)}
    name = profile_name or course.lab_profile
    if name not in choices:
        log.warning("lab refused: user %s asked for profile %r for course %s", user.id, name, course.slug)
        raise LabRefused(_("This course's lab cannot use the profile '%(name)s'.", name=name))
    profile = choices[name]
    if profile.uses_gpu:
        quota = quota_for(session, user, course)
        if quota.exhausted:
            log.warning("lab refused: user %s used up the GPU quota of course %s", user.id, course.slug)
            raise LabRefused(_("You have used all %(hours)s GPU hours of this course. You can still open the lab "
                               "on a CPU.", hours=f"{quota.hours:g}"))

    current = active_session(session, user.id)
    if current is not None:
        same_place = current.profile == profile.name and (current.course_id == course.id or not profile.uses_gpu)
        if same_place and current.state in ACTIVE_STATES:
            current.assignment_id = assignment.id if assignment is not None else current.assignment_id
            current.last_seen_at = utcnow()
            if current.state == LabState.running:
                current.notebook_path = None  # copy this assignment's notebooks on the next look
            session.commit()
            return current
        stop_lab(session, client, current, reason="replaced", actor=user)

    lab = LabSession(user_id=user.id, course_id=course.id, assignment_id=assignment.id if assignment else None,
                     cohort_id=cohort.id if cohort is not None else None, hub_user=hub_username(user),
                     profile=profile.name, gpus=profile.gpus, state=LabState.queued,
                     progress_message=_("Waiting for a GPU"))
    session.add(lab)
    try:
        session.commit()
    except IntegrityError:  # a second tab launched at the same moment: use that one
        session.rollback()
        existing = active_session(session, user.id)
        if existing is None:
            raise
        return existing
    audit(session, "lab.launch", actor=user, target_type="lab_session", target_id=lab.id, course=course.slug,
          profile=profile.name)
    if profile.uses_gpu:
        _serve_queue(session, client, settings)
    else:
        _start(session, client, settings, lab)
    session.commit()
    return lab


def _serve_queue(session: Session, client: HubClient, settings: Settings) -> None:
    """Hand free devices to the people at the head of the line (in line order; no overtaking)."""
    known = profiles(settings)
    for waiting in waiting_line(session):
        profile = known.get(waiting.profile)
        if profile is None:
            _finish(waiting, LabState.failed, "profile_removed")
            continue
        device = free_device(session, settings, profile)
        if device is None:
            if not profile.shared:
                break  # the head waits for a whole GPU; nobody behind may take one first
            continue
        waiting.device = device or None
        if device == "" and not cluster_gpus(settings):
            waiting.gpus = 0  # no GPU on this machine: a CPU lab, not metered as GPU time
        session.commit()
        _start(session, client, settings, waiting)


def _start(session: Session, client: HubClient, settings: Settings, lab: LabSession) -> None:
    """Mark ``lab`` as starting. The hub is asked on the next look at the lab (``refresh``), so the
    learner's click is answered at once and the progress page shows even while the hub is busy."""
    lab.state = LabState.starting
    lab.requested_at = None
    lab.progress, lab.progress_message = 5, _("Asking the lab server to start")
    session.commit()


def _request_start(session: Session, client: HubClient, settings: Settings, lab: LabSession) -> None:
    """Ask the hub to start ``lab``'s server, once: two pages polling at the same moment start it once."""
    claimed = session.execute(
        update(LabSession)
        .where(LabSession.id == lab.id, LabSession.state == LabState.starting, LabSession.requested_at.is_(None))
        .values(requested_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    session.refresh(lab)
    if not claimed:
        return
    options = {"profile": lab.profile, "device": lab.device or "", "session": str(lab.id),
               "grant": grant(settings, lab.hub_user, lab.profile, lab.device or "", lab.id)}
    try:
        client.ensure_user(lab.hub_user)
        status = client.start(lab.hub_user, options)
    except HubUnavailable as exc:
        log.warning("lab %s: hub unavailable: %s", lab.id, exc)
        _finish(lab, LabState.failed, "hub_down", error=str(exc))
        session.commit()
        return
    except HubError as exc:
        log.error("lab %s: hub refused the start: %s", lab.id, exc)
        _cleanup_on_hub(client, lab)
        _finish(lab, LabState.failed, "spawn_failed", error=str(exc))
        session.commit()
        return
    if status == 400:  # already running (started earlier, e.g. before a portal restart): reuse it
        lab.progress_message = _("Your lab is already running")
    session.commit()


def _cleanup_on_hub(client: HubClient, lab: LabSession) -> None:
    """Nothing half-started stays behind: ask the hub to stop whatever it has for this person."""
    with contextlib.suppress(HubError):
        client.stop(lab.hub_user)


def _finish(lab: LabSession, state: LabState, reason: str, *, error: str | None = None,
            at: dt.datetime | None = None) -> None:
    lab.state = state
    lab.stop_reason = reason
    lab.error = error
    lab.stopped_at = at or utcnow()
    if lab.started_at is not None and lab.stopped_at < lab.started_at:
        lab.stopped_at = lab.started_at


# -- following a launch -------------------------------------------------------------------------------------------

STEP_MESSAGES = {
    "queued": "Waiting for a GPU",
    "requested": "Asking the lab server to start",
    "spawning": "Preparing your workspace",
    "waiting": "Starting JupyterLab",
    "copying": "Copying the assignment's notebooks",
    "ready": "Your lab is ready",
}


def refresh(session: Session, client: HubClient, settings: Settings, lab: LabSession) -> LabSession:
    """Advance a launch by looking at the hub: queue → starting → (copy notebooks) → running.

    Called by the learner's page while it waits.  Raises HubUnavailable when the hub cannot be
    reached (the page says so and keeps trying; nothing changes here).
    """
    now = utcnow()
    lab.last_seen_at = now
    if lab.state == LabState.queued:
        _serve_queue(session, client, settings)
    if lab.state == LabState.starting and lab.requested_at is None:
        _request_start(session, client, settings, lab)
    if lab.state == LabState.starting:
        server = client.server(lab.hub_user)
        if server.ready:
            lab.started_at = lab.started_at or _parse_time(server.started) or now
            lab.progress, lab.progress_message = 90, _("Copying the assignment's notebooks")
            _open_notebooks(session, client, lab)
            lab.state = LabState.running
            lab.progress, lab.progress_message = 100, _("Your lab is ready")
        elif server.pending:
            events = client.progress(lab.hub_user)
            if events:
                lab.progress = max(lab.progress, min(int(events[-1].get("progress") or 0), 85))
            lab.progress_message = _("Starting JupyterLab") if lab.progress >= 50 else _("Preparing your workspace")
            limit = dt.timedelta(seconds=settings.lab_spawn_timeout + 30)
            if lab.requested_at is not None and now - lab.requested_at > limit:
                _cleanup_on_hub(client, lab)
                _finish(lab, LabState.failed, "timeout", error="the server did not start in time")
        elif lab.requested_at is not None and now - lab.requested_at > dt.timedelta(seconds=3):
            # Neither pending nor running: the spawn failed (the hub already cleaned up).
            events = client.progress(lab.hub_user)
            failure = next((e.get("message") for e in reversed(events) if e.get("failed")), None)
            _finish(lab, LabState.failed, "spawn_failed", error=failure or "the lab server stopped while starting")
    elif lab.state == LabState.running:
        server = client.server(lab.hub_user)
        if not server.exists:
            _finish(lab, LabState.stopped, "hub")
        elif not lab.notebook_path and lab.assignment_id is not None:
            _open_notebooks(session, client, lab)
    session.commit()
    if lab.state in (LabState.stopped, LabState.failed):
        _serve_queue(session, client, settings)
        session.commit()
    return lab


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# -- notebooks in the learner's workspace ---------------------------------------------------------------------------

def workspace_path(assignment: Assignment, name: str) -> str:
    """Where a notebook of ``assignment`` lives in the learner's lab: ``<course>/<assignment>/<name>``.

    Raises LabRefused for a name that would leave that folder (``..``, absolute, a backslash).
    """
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\x00" in name:
        raise LabRefused(_("That notebook name is not allowed."))
    path = posixpath.join(assignment.course.slug, assignment.slug, name)
    if posixpath.normpath(path) != path or path.startswith(("/", "..")):
        raise LabRefused(_("That notebook name is not allowed."))
    return path


def _open_notebooks(session: Session, client: HubClient, lab: LabSession) -> None:
    assignment = session.get(Assignment, lab.assignment_id) if lab.assignment_id else None
    if assignment is None:
        lab.notebook_path = ""
        return
    lab.notebook_path = copy_notebooks(session, client, lab.hub_user, assignment)


def copy_notebooks(session: Session, client: HubClient, hub_user: str, assignment: Assignment) -> str:
    """Put the released notebooks, and the files released beside them (the test cells may import a helper
    module), into the workspace, never over the learner's own copy.

    Returns the path of the first notebook (the one the lab opens).
    """
    from academy.grading import services as grading

    release = grading.current_release(session, assignment)
    paths = [workspace_path(assignment, name) for name in assignment.notebooks]
    if not paths:
        return ""
    client.make_dirs(hub_user, posixpath.dirname(paths[0]))
    for name, path in zip(assignment.notebooks, paths, strict=True):
        if client.get_file(hub_user, path, content=False) is None:
            client.put_notebook(hub_user, path, json.loads(grading.released_notebook(release, name)))
    for name, data in grading.released_support_files(release).items():
        path = workspace_path(assignment, name)
        if client.get_file(hub_user, path, content=False) is None:
            client.put_file(hub_user, path, data)
    return paths[0]


def reset_notebook(session: Session, client: HubClient, user: User, assignment: Assignment, name: str) -> str:
    """Replace the learner's notebook by the original; their version is kept as a backup copy.

    Returns the backup's path ("" when there was nothing to back up).
    """
    from academy.grading import services as grading

    if name not in assignment.notebooks:
        raise LabRefused(_("That notebook is not part of this assignment."))
    path = workspace_path(assignment, name)
    hub_user = hub_username(user)
    backup = ""
    if client.get_file(hub_user, path, content=False) is not None:
        stem = name[:-6] if name.endswith(".ipynb") else name
        backup = posixpath.join(posixpath.dirname(path), f"{stem}.backup-{utcnow():%Y%m%d-%H%M%S}.ipynb")
        client.rename(hub_user, path, backup)
    else:
        client.make_dirs(hub_user, posixpath.dirname(path))
    original = grading.released_notebook(grading.current_release(session, assignment), name)
    client.put_notebook(hub_user, path, json.loads(original))
    audit(session, "lab.reset_notebook", actor=user, target_type="assignment", target_id=assignment.id,
          notebook=name, backup=backup)
    return backup


def pull_notebooks(client: HubClient, user: User, assignment: Assignment) -> dict[str, bytes]:
    """The learner's current notebooks of ``assignment``, read from their running lab.

    Raises LabRefused when the lab is not running or holds none of them.
    """
    hub_user = hub_username(user)
    if not client.server(hub_user).ready:
        raise LabRefused(_("Your lab is not running. Open the lab first, or upload the notebook instead."))
    files: dict[str, bytes] = {}
    for name in assignment.notebooks:
        model = client.get_file(hub_user, workspace_path(assignment, name))
        if model is not None and model.get("type") == "notebook":
            files[name] = json.dumps(model["content"], ensure_ascii=False).encode("utf-8")
    if not files:
        raise LabRefused(_("Your lab has no notebook of this assignment. Open the assignment in the lab first."))
    return files


# -- stopping, events, sweeping -----------------------------------------------------------------------------------

def stop_lab(session: Session, client: HubClient | None, lab: LabSession, *, reason: str,
             actor: User | None, at: dt.datetime | None = None) -> LabSession:
    """Stop a lab (or leave the queue).

    The row is closed first (with who stopped it and why), then the hub is asked; the hub's own stop
    event that follows finds nothing left to close.  A hub that is down or refuses leaves a server the
    sweep stops later (servers without an open session are stopped there); the GPU is free at once.
    """
    was_running = lab.state in (LabState.starting, LabState.running)
    state = LabState.cancelled if lab.state == LabState.queued else LabState.stopped
    _finish(lab, state, reason, at=at)
    audit(session, "lab.stop", actor=actor, target_type="lab_session", target_id=lab.id,
          reason=reason, user=lab.user_id)
    session.commit()
    if was_running and client is not None:
        try:
            client.stop(lab.hub_user)
        except HubError as exc:
            log.warning("lab %s: the hub did not stop the server (%s); the lab sweep will", lab.id, exc)
    return lab


def record_hub_event(session: Session, client: HubClient | None, settings: Settings, event: dict[str, Any]) -> bool:
    """A start/stop event from the hub (hub_config: PortalEventHandler). Returns True when it changed a lab."""
    action = event.get("event")
    hub_user = str(event.get("user") or "")
    if action not in ("start", "stop") or user_id_from_hub_name(hub_user) is None or event.get("server"):
        return False
    at = _parse_time(str(event.get("time") or "")) or utcnow()
    lab = session.scalar(select(LabSession).where(LabSession.hub_user == hub_user,
                                                  LabSession.state.in_((LabState.starting, LabState.running)))
                         .order_by(LabSession.id.desc()))
    if lab is None:
        return False
    if action == "start":
        if lab.started_at is None:
            lab.started_at = at
    else:
        # Conditional: the portal may have closed this row (with its own reason) since it was read.
        closed = session.execute(
            update(LabSession)
            .where(LabSession.id == lab.id, LabSession.state.in_((LabState.starting, LabState.running)))
            .values(state=LabState.stopped, stop_reason=func.coalesce(LabSession.stop_reason, "hub"),
                    stopped_at=max(at, lab.started_at) if lab.started_at else at)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if not closed:
            return False
        if client is not None:
            _serve_queue(session, client, settings)
    session.commit()
    return True


@dataclass
class SweepReport:
    stopped_gone: int = 0
    stopped_orphans: int = 0
    warned: int = 0
    stopped_quota: int = 0
    expired_waiting: int = 0


def sweep(session: Session, client: HubClient, settings: Settings, *, now: dt.datetime | None = None) -> SweepReport:
    """Periodic housekeeping (Celery beat): reconcile with the hub, enforce GPU quotas, expire the queue."""
    from academy.mail.services import queue_mail

    now = now or utcnow()
    report = SweepReport()
    running = {u["name"]: u for u in client.users() if (u.get("servers") or {}).get("")}
    for lab in session.scalars(select(LabSession).where(LabSession.state == LabState.running)):
        if lab.hub_user not in running:
            _finish(lab, LabState.stopped, "hub", at=now)
            report.stopped_gone += 1
    # A server no open session accounts for (a stop the hub missed): it would hold a GPU unseen.
    accounted = set(session.scalars(select(LabSession.hub_user).where(LabSession.state.in_(ACTIVE_STATES))))
    for name in running:
        if user_id_from_hub_name(name) is not None and name not in accounted:
            log.warning("lab sweep: stopping %s's server, which no open lab session accounts for", name)
            client.stop(name)
            report.stopped_orphans += 1
    for lab in session.scalars(select(LabSession).where(LabSession.state == LabState.running, LabSession.gpus > 0)):
        course = session.get(Course, lab.course_id)
        if course is None or not course.gpu_hour_quota:
            continue
        used = gpu_hours_used(session, lab.user_id, lab.course_id, now=now)
        left_minutes = (course.gpu_hour_quota - used) * 60
        if left_minutes <= 0:
            stop_lab(session, client, lab, reason="quota", actor=None, at=now)
            report.stopped_quota += 1
        elif left_minutes <= settings.lab_quota_warning_minutes and lab.warned_at is None:
            lab.warned_at = now
            user = session.get(User, lab.user_id)
            if user is not None:
                queue_mail(session, user.email, _("Your GPU time is almost used up"),
                           _("Your lab for %(course)s will be stopped in about %(minutes)d minutes, when your GPU "
                             "hours for the course are used up. Save your work now.",
                             course=course.title_ko,
                             minutes=max(int(left_minutes), 1)))
            report.warned += 1
    ttl = dt.timedelta(seconds=settings.lab_queue_ttl_seconds)
    waiting = select(LabSession).where(or_(LabSession.state == LabState.queued, and_(
        LabSession.state == LabState.starting, LabSession.requested_at.is_(None))))
    for lab in session.scalars(waiting):
        if now - lab.last_seen_at > ttl:
            _finish(lab, LabState.cancelled, "left_queue", at=now)
            report.expired_waiting += 1
    session.commit()
    _serve_queue(session, client, settings)
    session.commit()
    return report


def quota_warning(session: Session, lab: LabSession, settings: Settings) -> float | None:
    """Minutes of GPU time left when the running lab is close to its quota (for the page), else None."""
    if lab.state != LabState.running or not lab.gpus:
        return None
    course = session.get(Course, lab.course_id)
    if course is None or not course.gpu_hour_quota:
        return None
    left = (course.gpu_hour_quota - gpu_hours_used(session, lab.user_id, lab.course_id)) * 60
    return left if left <= settings.lab_quota_warning_minutes else None


def sign_out_of_hub(session: Session, user: User) -> str | None:
    """Revoke the hub's tokens for ``user``; returns the hub's logout URL to pass through, if any."""
    from flask import current_app

    revoke_all(user.id)
    settings: Settings = current_app.config["ACADEMY_SETTINGS"]
    if not settings.labs_enabled:
        return None
    used_lab = session.scalar(select(func.count(LabSession.id)).where(LabSession.user_id == user.id))
    if not used_lab:
        return None
    try:
        client_for(settings).delete_tokens(hub_username(user))
    except HubError as exc:
        log.warning("sign-out: could not reach the hub to end %s's lab session: %s", user.id, exc)
        return None
    return f"{settings.hub_browser_url}/hub/logout"


def lab_url(settings: Settings, lab: LabSession) -> str:
    """Where the browser goes: JupyterLab with the assignment's notebook open."""
    from urllib.parse import quote

    base = f"{settings.hub_browser_url}/user/{quote(lab.hub_user)}/lab"
    if lab.notebook_path:
        return f"{base}/tree/{quote(lab.notebook_path)}"
    return base


# -- reports --------------------------------------------------------------------------------------------------------

@dataclass
class DeviceUse:
    device: GpuDevice
    holders: list[LabSession]
    gpu_hours_30d: float


def device_report(session: Session, settings: Settings, *, now: dt.datetime | None = None) -> list[DeviceUse]:
    """Each GPU, who holds it now, and its GPU-hours over the last 30 days."""
    now = now or utcnow()
    since = now - dt.timedelta(days=30)
    devices = sync_inventory(session, settings)
    report = []
    for device in devices:
        rows = list(session.scalars(select(LabSession).where(LabSession.device == device.index)))
        holders = [r for r in rows if r.state in (LabState.starting, LabState.running)]
        hours = 0.0
        for row in rows:
            if row.started_at is None:
                continue
            start = max(row.started_at, since)
            end = row.stopped_at or now
            if end > start:
                hours += (end - start).total_seconds() / 3600 * max(row.gpus, 1)
        report.append(DeviceUse(device=device, holders=holders, gpu_hours_30d=hours))
    return report


@dataclass
class CourseUsage:
    course: Course
    sessions: int
    learners: int
    gpu_hours: float


def gpu_usage_by_course(session: Session, *, now: dt.datetime | None = None) -> list[CourseUsage]:
    """GPU-hours per course (all time), for the admins' report."""
    by_course: dict[int, list[LabSession]] = {}
    for row in session.scalars(select(LabSession).where(LabSession.gpus > 0, LabSession.started_at.is_not(None))):
        by_course.setdefault(row.course_id, []).append(row)
    usage = []
    for course_id, rows in by_course.items():
        course = session.get(Course, course_id)
        if course is not None:
            usage.append(CourseUsage(course=course, sessions=len(rows), learners=len({r.user_id for r in rows}),
                                     gpu_hours=sum(r.gpu_seconds(now) for r in rows) / 3600))
    return sorted(usage, key=lambda u: -u.gpu_hours)


@dataclass
class CompanyUsage:
    company: str
    learners: int
    gpu_hours: float


def gpu_usage_by_company(session: Session, *, now: dt.datetime | None = None) -> list[CompanyUsage]:
    """GPU-hours per learners' company (all time), for the province's reports."""
    from academy.users.models import Company

    by_company: dict[str, tuple[set[int], float]] = {}
    rows = session.execute(select(LabSession, Company.name).join(User, User.id == LabSession.user_id)
                           .outerjoin(Company, Company.id == User.company_id)
                           .where(LabSession.gpus > 0, LabSession.started_at.is_not(None)))
    for lab, company in rows:
        key = company or "—"
        learners, hours = by_company.get(key, (set(), 0.0))
        learners.add(lab.user_id)
        by_company[key] = (learners, hours + lab.gpu_seconds(now) / 3600)
    return sorted((CompanyUsage(company=k, learners=len(v[0]), gpu_hours=v[1]) for k, v in by_company.items()),
                  key=lambda u: -u.gpu_hours)
