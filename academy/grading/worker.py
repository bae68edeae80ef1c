"""Running grading jobs: claim with a lease, grade, record once.

A job is claimed by a conditional UPDATE (queued, or running with an expired lease,
and attempts left); while grading, a heartbeat thread extends the lease; the result
is written only if this worker still holds the job (same worker and attempt), in the
same transaction that marks the job done.  A worker killed mid-job simply stops
renewing its lease: the sweeper re-sends the job, another worker claims it, and the
result is recorded once.  After ``max_attempts`` the submission shows
``grader_error`` — never a zero score.

A job of a GPU course (``grading_profile = "gpu"``) takes a GPU seat first (``academy.grading.gpu``): the
heartbeat renews the seat with the lease, and the seat is given back when grading ends, whatever happened; a
worker killed mid-job leaves a seat that lapses as its lease does.  Without a seat the job grades on the CPU and
its result's ``problems`` say why.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import update

from academy.db import utcnow
from academy.extensions import db
from academy.grading.models import GradingJob, JobState, Submission, SubmissionStatus
from academy.grading.services import pending_jobs, queue_grading, record_result
from academy.grading.storage import feedback_store, graded_store, submission_store

if TYPE_CHECKING:
    from academy.grading.gpu import GradingDevice

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
HEARTBEAT_SECONDS = 15
REQUEUE_QUEUED_AFTER = dt.timedelta(minutes=2)


def worker_name() -> str:
    """Identifies this process in job rows."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(job_id: int, worker: str, *, now: dt.datetime | None = None) -> int | None:
    """Take the job if it is free; returns the attempt number, or None when not ours to run."""
    now = now or utcnow()
    result = db.session.execute(
        update(GradingJob)
        .where(
            GradingJob.id == job_id,
            GradingJob.attempts < GradingJob.max_attempts,
            (GradingJob.state == JobState.queued)
            | ((GradingJob.state == JobState.running) & (GradingJob.lease_until < now)),
        )
        .values(
            state=JobState.running,
            attempts=GradingJob.attempts + 1,
            lease_until=now + dt.timedelta(seconds=lease_seconds()),
            worker=worker,
            started_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        return None
    job = db.session.get(GradingJob, job_id)
    db.session.refresh(job)
    job.submission.status = SubmissionStatus.grading
    attempt = job.attempts
    db.session.commit()
    return attempt




class _Heartbeat(threading.Thread):
    """Extends the job's lease while grading runs, on its own connection."""

    def __init__(self, app: object, job_id: int, worker: str, attempt: int) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.app, self.job_id, self.worker, self.attempt = app, job_id, worker, attempt
        self.stopped = threading.Event()
        self.gpu_hold: int | None = None  # the job's GPU seat, renewed with the lease (academy.grading.gpu)

    def run(self) -> None:
        interval = min(HEARTBEAT_SECONDS, max(lease_seconds(self.app) / 3, 0.5))
        while not self.stopped.wait(interval):
            with self.app.app_context():  # type: ignore[attr-defined]
                try:
                    db.session.execute(
                        update(GradingJob)
                        .where(GradingJob.id == self.job_id, GradingJob.worker == self.worker,
                               GradingJob.attempts == self.attempt, GradingJob.state == JobState.running)
                        .values(lease_until=utcnow() + dt.timedelta(seconds=lease_seconds()))
                        .execution_options(synchronize_session=False)
                    )
                    if self.gpu_hold is not None:
                        from academy.labs.grading_seats import renew_grading_seat

                        if not renew_grading_seat(db.session, self.gpu_hold, seconds=lease_seconds()):
                            log.warning("job %s: its GPU seat lapsed while it grades (no beat for a lease)",
                                        self.job_id)
                    db.session.commit()
                except Exception:  # noqa: BLE001 - a missed beat only shortens the lease
                    db.session.rollback()
                    log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)
                finally:
                    db.session.remove()


def lease_seconds(app: object = None) -> float:
    """How long a claim lasts without a heartbeat (ACADEMY_JOB_LEASE_SECONDS)."""
    app = app or current_app
    return float(app.config.get("ACADEMY_JOB_LEASE_SECONDS", LEASE_SECONDS))  # type: ignore[attr-defined]


def _grade(submission: Submission, policy: object = None) -> tuple[dict, bytes | None, dict[str, str]]:
    """Run the grading pipeline on a stored submission, in the sandbox ``policy`` (None: the default, CPU).

    Returns the result JSON, nbgrader's feedback HTML and the notebooks as the grader ran them.
    """
    from academy.engine.course import portal_cache_dir
    from academy.engine.pipeline import grade_submission

    data_dir = Path(current_app.config["ACADEMY_DATA_DIR"])
    store = submission_store(data_dir)
    notebooks = {f.name: store.get(f.sha256) for f in submission.files}
    result = grade_submission(
        Path(submission.release.path),
        submission.assignment.slug,
        notebooks,
        student_id=f"s{submission.id}",
        feedback=True,
        work_root=data_dir / "work",
        cache_dir=portal_cache_dir(data_dir),  # shared with releases.ensure_release
        policy=policy,
    )
    return result.to_json(), result.feedback_html(), result.executed


def _take_device(submission: Submission, job_id: int, worker: str) -> GradingDevice:
    """The device the job grades on (a GPU seat for a GPU course, where one is free), committed at once.

    A failure to take a seat (the database busy, say) grades on the CPU rather than failing the attempt.
    """
    from academy.grading.gpu import CPU_FALLBACK, GradingDevice, grading_device

    try:
        device = grading_device(db.session, current_app.config["ACADEMY_SETTINGS"], submission.assignment.course,
                                job_id=job_id, worker=worker, hold_seconds=lease_seconds())
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - the CPU grades instead; the job itself is fine
        db.session.rollback()
        log.warning("grading job %s: no GPU seat taken", job_id, exc_info=True)
        return GradingDevice(problem=f"{CPU_FALLBACK}the GPU seat could not be taken ({type(exc).__name__})")
    return device


def _give_back(device: GradingDevice) -> None:
    """Give the job's GPU seat back (if it cannot be now, it lapses when its lease would have)."""
    from academy.labs.grading_seats import release_grading_seat

    if device.hold_id is None:
        return
    try:
        release_grading_seat(db.session, device.hold_id)
        db.session.commit()
    except Exception:  # noqa: BLE001 - the seat lapses by itself
        db.session.rollback()
        log.warning("GPU seat %s not given back now; it lapses", device.hold_id, exc_info=True)


def run_job(job_id: int) -> str:
    """Claim and run one grading job; returns what happened (for logs and tests)."""
    worker = worker_name()
    attempt = claim(job_id, worker)
    if attempt is None:
        return "skipped"
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    heartbeat = _Heartbeat(app, job_id, worker, attempt)
    heartbeat.start()
    device: GradingDevice | None = None
    try:
        job = db.session.get(GradingJob, job_id)
        submission = job.submission
        try:
            device = _take_device(submission, job_id, worker)
            heartbeat.gpu_hold = device.hold_id
            result, feedback, executed = _grade(submission, device.policy)
            if device.problem:
                result["problems"] = [device.problem, *result.get("problems", [])]
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure here is the grader's, not the learner's
            log.exception("grading job %s failed", job_id)
            result, feedback, executed, error = None, None, {}, f"{type(exc).__name__}: {exc}"
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)
        if device is not None:
            _give_back(device)

    return _finish(job_id, worker, attempt, result, feedback, error, executed)


def _finish(job_id: int, worker: str, attempt: int, result: dict | None, feedback: bytes | None,
            error: str | None, executed: dict[str, str] | None = None) -> str:
    """Record the outcome if this worker still holds the job."""
    now = utcnow()
    if result is not None:
        target = JobState.done
    else:
        job = db.session.get(GradingJob, job_id)
        target = JobState.failed if attempt >= job.max_attempts else JobState.queued
    owned = db.session.execute(
        update(GradingJob)
        .where(GradingJob.id == job_id, GradingJob.worker == worker, GradingJob.attempts == attempt,
               GradingJob.state == JobState.running)
        .values(state=target, finished_at=now, lease_until=None, error=error)
        .execution_options(synchronize_session=False)
    )
    if owned.rowcount != 1:
        db.session.rollback()
        log.warning("job %s was taken over by another worker; dropping this result", job_id)
        return "lost"
    job = db.session.get(GradingJob, job_id)
    db.session.refresh(job)
    submission = job.submission
    previous_score = submission.score
    if result is not None:
        data_dir = Path(current_app.config["ACADEMY_DATA_DIR"])
        digest = feedback_store(data_dir).put(feedback) if feedback else None
        graded = {name: graded_store(data_dir).put(text.encode("utf-8")) for name, text in (executed or {}).items()}
        record_result(db.session, submission, result, feedback_sha256=digest, graded_notebooks=graded)
        if job.reason == "regrade":
            _tell_learner_about_regrade(submission, previous_score)
        else:
            _tell_learner_graded(submission)
        from academy.completion.services import refresh_safely

        refresh_safely(db.session, submission.user, submission.assignment.course)
    elif target is JobState.failed:
        record_result(db.session, submission, {"status": "grader_error", "problems": [error or "grader error"]})
    else:
        submission.status = SubmissionStatus.queued
        queue_grading(db.session, job, now=now)
    db.session.commit()
    return target.value


def _tell_learner_graded(submission: Submission) -> None:
    """A new attempt was graded: the learner's inbox says so, with the score once it may be shown."""
    from flask_babel import force_locale
    from flask_babel import gettext as _

    from academy.grading.standing import learner_standing
    from academy.inbox.services import tell

    learner = submission.user
    locale = learner.locale or "ko"
    standing = learner_standing(db.session, submission.assignment, learner)
    shown = standing.attempt(submission)
    with force_locale(locale):
        title = submission.assignment.title(locale)
        if not submission.status.has_score:
            body = _("Your attempt %(n)d at %(title)s could not be graded because of a problem on our side. "
                     "Nothing counts against you; your instructor can grade it again.", n=submission.attempt,
                     title=title)
        elif shown.held:
            body = _("Your attempt %(n)d at %(title)s was graded. The visible tests' results are on the page; "
                     "your total appears after the deadline.", n=submission.attempt, title=title)
        else:
            body = _("Your attempt %(n)d at %(title)s was graded: %(score)s of %(max)s points.",
                     n=submission.attempt, title=title, score=f"{shown.final_score or 0:g}",
                     max=f"{shown.max_score:g}")
        tell(db.session, learner, "score", _("%(title)s: your attempt was graded", title=title), body,
             link=f"/submissions/{submission.public_id}")


def _tell_learner_about_regrade(submission: Submission, previous_score: float | None) -> None:
    """A regrade changes a learner's score: tell them, with an audit entry."""
    from flask_babel import force_locale
    from flask_babel import gettext as _

    from academy.audit.services import record
    from academy.inbox.services import tell

    record(db.session, "submission.regraded", actor=None, target_type="submission", target_id=submission.id,
           previous_score=previous_score, score=submission.score, status=submission.status.value)
    if submission.score == previous_score:
        return
    with force_locale(submission.user.locale or "ko"):
        title = submission.assignment.title(submission.user.locale or "ko")
        tell(
            db.session,
            submission.user,
            "score_changed",
            _("Your score for %(title)s was updated", title=title),
            _("Your attempt %(n)d at %(title)s was graded again after a correction. "
              "Score before: %(old)s. Score now: %(new)s.",
              n=submission.attempt, title=title,
              old="—" if previous_score is None else f"{previous_score:g}",
              new="—" if submission.score is None else f"{submission.score:g}"),
            link=f"/submissions/{submission.public_id}",
        )


def requeue_stale(*, now: dt.datetime | None = None) -> int:
    """Re-send jobs that look lost: running with an expired lease, or queued and unsent for long."""
    now = now or utcnow()
    stale = []
    for job in pending_jobs(db.session, older_than=REQUEUE_QUEUED_AFTER, now=now):
        if job.state is JobState.queued and job.published_at and job.published_at > now - REQUEUE_QUEUED_AFTER:
            continue
        if job.attempts >= job.max_attempts:
            # Its last worker died: give up rather than loop on a poison notebook.
            job.state = JobState.failed
            job.finished_at = now
            record_result(db.session, job.submission,
                          {"status": "grader_error", "problems": ["the grading worker stopped repeatedly"]})
            continue
        queue_grading(db.session, job, now=now)
        stale.append(job.id)
    db.session.commit()  # sends the messages
    return len(stale)
