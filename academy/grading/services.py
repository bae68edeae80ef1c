"""Submitting, recording grades and regrading.

``submit`` validates and stores a learner's notebooks and records the submission and
its grading job in the caller's transaction and queues the job through
``academy.jobs.enqueue_after_commit`` (``queue_grading``): the message leaves when the
caller commits, so a worker never looks for a row that is not there yet.
``record_result`` writes what the grader found, idempotently: grading the same
submission again replaces its cell scores and leaves one score.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.catalog.models import Assignment
from academy.db import utcnow
from academy.engine.validation import NotValidText, UngradableInput, load_notebook
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, from_engine
from academy.grading import deadlines
from academy.grading.models import (
    AssignmentRelease,
    CellScore,
    Extension,
    GradingJob,
    JobState,
    ScoreOverride,
    Submission,
    SubmissionFile,
    SubmissionStatus,
)
from academy.grading.preflight import PreflightReport, check_notebook
from academy.grading.storage import BlobStore
from academy.users.models import User


def current_release(session: Session, assignment: Assignment) -> AssignmentRelease:
    """The latest released version of ``assignment``. Raises NotFound when none exists."""
    release = session.scalar(
        select(AssignmentRelease)
        .where(AssignmentRelease.assignment_id == assignment.id)
        .order_by(AssignmentRelease.version.desc())
        .limit(1)
    )
    if release is None:
        raise NotFound(_("This assignment has not been released yet."))
    return release


def learner_cohort(session: Session, assignment: Assignment, user: User) -> Cohort:
    """The cohort through which ``user`` takes ``assignment``'s course.

    Raises PermissionDenied when the user is not enrolled in a cohort of its track.
    """
    cohort = session.scalar(
        select(Cohort)
        .join(Enrollment, Enrollment.cohort_id == Cohort.id)
        .where(
            Enrollment.user_id == user.id,
            Enrollment.status == EnrollmentStatus.enrolled,
            Cohort.track_id == assignment.course.track_id,
        )
        .order_by(Cohort.starts_at.desc())
        .limit(1)
    )
    if cohort is None:
        raise PermissionDenied(_("You are not enrolled in a cohort of this course."))
    return cohort


def cohort_deadline(assignment: Assignment, cohort: Cohort) -> dt.datetime:
    """An assignment's deadline in a cohort: start + ``due_days``, capped at the cohort's end.

    Deadlines fall at 23:59 Asia/Seoul of that day, which is what a learner expects
    "due on the 14th" to mean.  Without ``due_days`` the cohort's end is the deadline.
    """
    if assignment.due_days is None:
        return cohort.ends_at
    from zoneinfo import ZoneInfo

    seoul = ZoneInfo("Asia/Seoul")
    start_local = cohort.starts_at.astimezone(seoul)
    day = (start_local + dt.timedelta(days=assignment.due_days)).date()
    local = dt.datetime.combine(day, dt.time(23, 59), tzinfo=seoul)
    return min(local.astimezone(dt.UTC), cohort.ends_at)


def deadline_for(session: Session, assignment: Assignment, user: User, cohort: Cohort) -> dt.datetime:
    """The learner's deadline: a personal extension if granted, else the cohort's.

    The same rule as ``academy.grading.standing`` (which every page uses to show it).
    """
    extension = session.scalar(
        select(Extension).where(Extension.assignment_id == assignment.id, Extension.user_id == user.id)
    )
    return extension.due_at if extension is not None else cohort_deadline(assignment, cohort)


@dataclass
class Preflight:
    """Preflight of every notebook of a submission."""

    reports: list[PreflightReport]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    @property
    def restorable(self) -> bool:
        return not self.ok and all(r.ok or r.restorable for r in self.reports)


def released_notebook(release: AssignmentRelease, name: str) -> bytes:
    """The released (student) version of one notebook of ``release``."""
    from pathlib import Path

    path = Path(release.path) / "release" / release.assignment.slug / name
    if not path.is_file():
        raise NotFound(_("No such notebook in this assignment."))
    return path.read_bytes()


def released_support_files(release: AssignmentRelease) -> dict[str, bytes]:
    """Files nbgrader releases beside the notebooks (data, helper modules such as ``academy_checks.py``), by name.

    nbgrader's release copies them unchanged from the source folder, which the stored release keeps.
    Only files directly in the assignment's folder (not sub-folders).
    """
    from pathlib import Path

    folder = Path(release.path) / "source" / release.assignment.slug
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix not in (".ipynb", ".pyc") and not p.name.startswith(".")}


def preflight(release: AssignmentRelease, files: dict[str, bytes]) -> Preflight:
    """Parse each uploaded notebook, recognise it by content, and compare it with its released version.

    Files are matched to the release's notebooks by their nbgrader cells, not their names
    (``academy.grading.matching``); each report is named after the notebook its file was
    taken for and remembers the name the file came with (``received_as``).  Raises
    ValidationFailed (with a learner-readable message) for a file that is not a notebook,
    or matches no notebook of this assignment, or two; for two files of one notebook;
    and for a notebook missing from the submission.
    """
    from academy.grading.matching import match_files

    if not files:
        raise ValidationFailed(_("Choose the notebook file to submit."))
    uploads = {}
    for name, data in sorted(files.items()):
        try:
            uploads[name] = load_notebook(data, name)
        except NotValidText:
            raise ValidationFailed(
                _("'%(name)s' is not valid text (it is not UTF-8 or holds characters that cannot be stored). "
                  "Nothing was submitted.", name=name)
            ) from None
        except UngradableInput as exc:
            raise ValidationFailed(
                _("'%(name)s' could not be read as a Jupyter notebook (%(reason)s). Nothing was submitted.",
                  name=name, reason=str(exc))
            ) from None
    with from_engine():
        released = {name: load_notebook(released_notebook(release, name), name)
                    for name in release.assignment.notebooks}
    reports = []
    for match in match_files(uploads, released):
        report = check_notebook(match.notebook, uploads[match.received_as], released[match.notebook])
        report.received_as, report.title, report.by_content = match.received_as, match.title, match.by_content
        reports.append(report)
    return Preflight(reports)


def taken_files(checked: Preflight, files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` keyed by the released notebook each was taken for in ``checked`` (see ``preflight``)."""
    return {report.name: files[report.received_as or report.name] for report in checked.reports}


def submit(
    session: Session,
    *,
    assignment: Assignment,
    user: User,
    files: dict[str, bytes],
    store: BlobStore,
    origin: str = "upload",
    now: dt.datetime | None = None,
) -> tuple[Submission, GradingJob]:
    """Accept a learner's notebooks: check, store immutably, record, and create a grading job.

    Raises PermissionDenied (not enrolled), NotFound (not released), ValidationFailed
    (not a valid notebook of this assignment, preflight problems, too late under a
    refusing policy) and Conflict (no attempts left, or a simultaneous submission).
    Nothing is recorded when it raises; stored blobs without a row are harmless.
    """
    now = now or utcnow()
    if not assignment.active:
        raise NotFound(_("This assignment is no longer offered."))
    cohort = learner_cohort(session, assignment, user)
    release = current_release(session, assignment)
    checked = preflight(release, files)
    if not checked.ok:
        problems = [issue.message for report in checked.reports for issue in report.issues
                    if issue.code != "unknown_cell"]
        raise ValidationFailed(" ".join(problems))
    due = deadline_for(session, assignment, user, cohort)
    late = deadlines.lateness(now, due, assignment.grading or {})
    previous = session.scalar(
        select(func.count()).select_from(Submission)
        .where(Submission.assignment_id == assignment.id, Submission.user_id == user.id)
    ) or 0
    max_attempts = assignment.policy("max_attempts")
    if max_attempts is not None and previous >= max_attempts:
        raise Conflict(_("You have used all %(n)d attempts for this assignment.", n=max_attempts))

    stored = {name: (store.put(data), len(data)) for name, data in taken_files(checked, files).items()}
    submission = Submission(
        assignment_id=assignment.id,
        user_id=user.id,
        release_id=release.id,
        attempt=previous + 1,
        origin=origin,
        submitted_at=now,
        due_at=due,
        late_days=late.late_days,
        penalty_percent=late.penalty_percent,
        status=SubmissionStatus.queued,
        max_score=assignment.max_score,
        files=[SubmissionFile(name=name, sha256=digest, size=size) for name, (digest, size) in stored.items()],
    )
    try:
        with session.begin_nested():
            session.add(submission)
    except IntegrityError:
        raise Conflict(_("Another submission of yours was being saved at the same moment. Try again.")) from None
    job = GradingJob(submission=submission, reason="submit", requested_by_id=user.id)
    session.add(job)
    session.flush()
    queue_grading(session, job, now=now)
    record(session, "submission.create", actor=user, target_type="submission", target_id=submission.id,
           assignment=assignment.slug, attempt=submission.attempt,
           files={name: digest for name, (digest, _size) in stored.items()})
    return submission, job


@dataclass
class Acceptance:
    """What became of submitted files: the preflight report, and the submission and its job when they passed."""

    preflight: Preflight
    submission: Submission | None = None
    job: GradingJob | None = None


def accept_files(session: Session, *, assignment: Assignment, user: User, files: dict[str, bytes],
                 store: BlobStore, origin: str, restore: bool = False) -> Acceptance:
    """Uploads and submissions from the lab alike: preflight, then submit the files when they pass.

    ``restore`` first puts back the released cells the learner deleted.  Raises as ``submit`` does.
    """
    release = current_release(session, assignment)
    if restore:
        files = _restored(release, files)
    checked = preflight(release, files)
    if not checked.ok:
        return Acceptance(checked)
    submission, job = submit(session, assignment=assignment, user=user, files=files, store=store, origin=origin)
    return Acceptance(checked, submission, job)


def _restored(release: AssignmentRelease, files: dict[str, bytes]) -> dict[str, bytes]:
    import nbformat

    from academy.grading.preflight import restore_missing_cells

    restored = {}
    taken_for = {report.received_as: report.name for report in preflight(release, files).reports}
    for name, data in files.items():
        with from_engine():
            mine = load_notebook(data, name)
            original = load_notebook(released_notebook(release, taken_for[name]), taken_for[name])
        restored[name] = nbformat.writes(restore_missing_cells(mine, original)).encode("utf-8")
    return restored


def grant_extension(session: Session, assignment: Assignment, learner: User, due_at: dt.datetime, *,
                    actor: User, reason: str | None = None) -> Extension:
    """Give one learner a personal deadline for an assignment (replacing an earlier one).

    The caller checks that ``actor`` may manage the course. Raises PermissionDenied for a
    learner who is not enrolled in a cohort of the course, and ValidationFailed for a date that
    does not end after the cohort's own deadline (an "extension" that shortens the time would
    make work already on time late; nothing is changed then).
    """
    from zoneinfo import ZoneInfo

    cohort = learner_cohort(session, assignment, learner)  # raises PermissionDenied when not enrolled
    original = cohort_deadline(assignment, cohort)
    if due_at <= original:
        shown = original.astimezone(ZoneInfo("Asia/Seoul")).strftime("%Y-%m-%d %H:%M KST")
        raise ValidationFailed(_("An extension must end after the original deadline (%(when)s).", when=shown))
    extension = session.scalar(
        select(Extension).where(Extension.assignment_id == assignment.id, Extension.user_id == learner.id)
    )
    if extension is None:
        extension = Extension(assignment_id=assignment.id, user_id=learner.id, due_at=due_at)
        session.add(extension)
    extension.due_at = due_at
    extension.reason = reason or None
    extension.granted_by_id = actor.id
    session.flush()
    record(session, "extension.grant", actor=actor, target_type="assignment", target_id=assignment.id,
           learner=learner.id, due_at=due_at.isoformat())
    return extension


# --- results -------------------------------------------------------------------------


MAX_COMMENT = 5000  # characters of an instructor's comment on one question
MAX_REASON = 500  # characters of the reason for an override or a flag decision
CONFIRMED, REJECTED = "confirmed", "rejected"


def record_result(session: Session, submission: Submission, result: dict[str, Any],
                  *, feedback_sha256: str | None = None, graded_notebooks: dict[str, str] | None = None
                  ) -> Submission:
    """Write a grading result (the ``academy grade --json`` shape) onto ``submission``.

    Idempotent: the cell scores are replaced, so grading twice leaves one set of scores.
    A ``grader_error`` result never carries a score.  ``graded_notebooks``: the stored
    notebooks as the grader ran them, by name (the feedback page is built from them).
    """
    status = SubmissionStatus(result["status"])
    # Points an instructor gave by hand survive a regrade (the answer they read has not changed),
    # and so do their comments.
    by_hand = {(c.notebook, c.grade_id): (c.score, c.max_score) for c in submission.cells
               if c.manual and c.score is not None}
    comments = {(c.notebook, c.grade_id): c.comment for c in submission.cells if c.comment}
    session.execute(delete(CellScore).where(CellScore.submission_id == submission.id))
    session.expire(submission, ["cells"])
    manual_points = 0.0
    overridden_delta = 0.0
    if status.has_score:
        from academy.grading.releases import hidden_test_cells

        overrides = {(o.notebook, o.grade_id): o for o in session.scalars(
            select(ScoreOverride).where(ScoreOverride.submission_id == submission.id))}
        hidden = hidden_test_cells(submission.release)
        for notebook in result.get("notebooks", []):
            stem = notebook["name"].removesuffix(".ipynb")
            for cell in notebook.get("cells", []):
                manual = bool(cell.get("needs_manual_grading", False))
                max_score = float(cell.get("max_score") or 0.0)
                score = cell.get("score")
                kept = by_hand.get((notebook["name"], cell["grade_id"]))
                if manual and score is None and kept is not None and kept[1] == max_score:
                    score = kept[0]
                    manual_points += kept[0]
                # Staff's override of an autograded cell outlives the regrade (capped by a lower new maximum).
                override = None if manual else overrides.get((notebook["name"], cell["grade_id"]))
                auto_score = None
                if override is not None:
                    auto_score = score
                    score = min(max(override.points, 0.0), max_score)
                    overridden_delta += score - float(auto_score or 0.0)
                session.add(CellScore(
                    submission_id=submission.id,
                    notebook=notebook["name"],
                    grade_id=cell["grade_id"],
                    score=score,
                    max_score=max_score,
                    hidden=bool(cell.get("hidden", False)) or (stem, cell["grade_id"]) in hidden,
                    manual=manual,
                    error=cell.get("error"),
                    visible_passed=cell.get("visible_passed"),
                    visible_error=cell.get("visible_error"),
                    comment=comments.get((notebook["name"], cell["grade_id"])),
                    auto_score=auto_score,
                    overridden=override is not None,
                ))
        raw = float(result.get("score") or 0.0) + manual_points + overridden_delta
        submission.raw_score = raw
        submission.score = deadlines.apply_penalty(raw, submission.penalty_percent)
    else:
        submission.raw_score = None
        submission.score = None
    submission.max_score = float(result.get("max_score") or submission.max_score or 0.0)
    submission.status = status
    submission.problems = list(result.get("problems", []))
    flags = list(result.get("flags", []))
    submission.flagged = bool(flags)
    submission.flag_reasons = flags
    if submission.flagged and submission.flag_review == REJECTED and submission.score is not None:
        submission.score = 0.0  # staff rejected this answer's score; a regrade does not bring it back
    submission.feedback_sha256 = feedback_sha256
    submission.graded_notebooks = dict(graded_notebooks) if graded_notebooks else None
    submission.graded_at = utcnow()
    session.flush()
    return submission


def grade_by_hand(session: Session, submission: Submission, points: dict[int, float], *, actor: User,
                  comments: dict[int, str] | None = None, names: dict[int, str] | None = None) -> Submission:
    """Give points to the manually graded cells (written answers) and comments to any graded cell.

    ``points`` maps CellScore ids to points, ``comments`` CellScore ids to the instructor's comment
    ("" removes it); ``names`` the ids to the question names used in error messages.  Raises
    ValidationFailed for points on a cell that is not manually graded, a cell not of this
    submission, points outside 0..max or a comment over ``MAX_COMMENT`` characters; nothing is
    changed then.
    """
    if not submission.status.has_score:
        raise ValidationFailed(_("Only a graded submission can be graded by hand."))
    names = names or {}
    every = {c.id: c for c in submission.cells}
    cells = {i: c for i, c in every.items() if c.manual}
    for cell_id, value in points.items():
        cell = cells.get(cell_id)
        if cell is None:
            raise ValidationFailed(_("That question is not graded by hand."))
        if not 0 <= value <= cell.max_score:
            raise ValidationFailed(_("Give %(cell)s between 0 and %(max)s points.",
                                     cell=names.get(cell_id) or _("this question"), max=f"{cell.max_score:g}"))
    changed = {}
    for cell_id, text in (comments or {}).items():
        if cell_id not in every:
            raise ValidationFailed(_("That question is not part of this submission."))
        text = text.strip().replace("\r\n", "\n")
        if len(text) > MAX_COMMENT:
            raise ValidationFailed(_("A comment can be at most %(n)d characters long.", n=MAX_COMMENT))
        if (every[cell_id].comment or "") != text:
            changed[cell_id] = text or None
    before = submission.score
    for cell_id, value in points.items():
        cells[cell_id].score = float(value)
    for cell_id, text in changed.items():
        every[cell_id].comment = text
    _rescore(submission)
    if points:
        submission.graded_at = utcnow()  # the score as it stands now was decided now
    record(session, "submission.grade_by_hand", actor=actor, target_type="submission", target_id=submission.id,
           points={cells[i].grade_id: v for i, v in points.items()},
           comments={every[i].grade_id: bool(t) for i, t in changed.items()},
           previous_score=before, score=submission.score)
    if points and submission.score != before:
        _tell_score_changed(session, submission, before)
    session.flush()
    return submission


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise ValidationFailed(_("Give a reason: the learner reads it, and it is kept in the audit log."))
    if len(text) > MAX_REASON:
        raise ValidationFailed(_("A reason can be at most %(n)d characters long.", n=MAX_REASON))
    return text


def _rescore(submission: Submission) -> None:
    """The attempt's total from its cells, after its late penalty (and 0 when staff rejected a flagged score)."""
    submission.raw_score = round(sum(c.score or 0.0 for c in submission.cells), 4)
    submission.score = deadlines.apply_penalty(submission.raw_score, submission.penalty_percent)
    if submission.flagged and submission.flag_review == REJECTED:
        submission.score = 0.0


def override_score(session: Session, submission: Submission, cell_id: int, points: float, *, reason: str | None,
                   actor: User, name: str | None = None) -> Submission:
    """Set an autograded cell's points by hand, with a reason: kept across regrades, audited, the learner told.

    Raises ValidationFailed (changing nothing) without a reason, for a written answer (those are graded
    by hand), a cell of another submission, or points outside 0..the cell's maximum.
    """
    if not submission.status.has_score:
        raise ValidationFailed(_("Only a graded submission can be graded by hand."))
    cell = next((c for c in submission.cells if c.id == cell_id), None)
    if cell is None:
        raise ValidationFailed(_("That question is not part of this submission."))
    if cell.manual:
        raise ValidationFailed(_("A written answer is graded by hand, not overridden."))
    if not 0 <= points <= cell.max_score:
        raise ValidationFailed(_("Give %(cell)s between 0 and %(max)s points.",
                                 cell=name or _("this question"), max=f"{cell.max_score:g}"))
    text = _reason(reason)
    before, cell_before = submission.score, cell.score
    row = session.scalar(select(ScoreOverride).where(
        ScoreOverride.submission_id == submission.id, ScoreOverride.notebook == cell.notebook,
        ScoreOverride.grade_id == cell.grade_id))
    actor_id = actor.id  # read before the new row is pending: an expired actor would flush it half-filled
    if row is None:
        row = ScoreOverride(submission_id=submission.id, notebook=cell.notebook, grade_id=cell.grade_id)
        session.add(row)
    row.points, row.reason, row.actor_id, row.created_at = float(points), text, actor_id, utcnow()
    if not cell.overridden:
        cell.auto_score, cell.overridden = cell.score, True
    cell.score = float(points)
    _rescore(submission)
    submission.graded_at = utcnow()
    record(session, "submission.override", actor=actor, target_type="submission", target_id=submission.id,
           cell=cell.grade_id, notebook=cell.notebook, grader=cell.auto_score, previous=cell_before,
           points=float(points), reason=text, previous_score=before, score=submission.score)
    _tell_score_changed(session, submission, before, reason=text)
    session.flush()
    return submission


def review_flag(session: Session, submission: Submission, decision: str, *, reason: str | None,
                actor: User) -> Submission:
    """Confirm (the score stands) or reject (it counts as 0) an attempt the grader flagged, with a reason."""
    if decision not in (CONFIRMED, REJECTED):
        raise ValidationFailed(_("Choose whether the score stands or not."))
    if not submission.flagged:
        raise ValidationFailed(_("The grader did not flag this submission."))
    text = _reason(reason)
    before = submission.score
    submission.flag_review, submission.flag_review_reason = decision, text
    submission.flag_reviewed_at, submission.flag_reviewed_by_id = utcnow(), actor.id
    if submission.status.has_score:
        _rescore(submission)
    record(session, "submission.flag_review", actor=actor, target_type="submission", target_id=submission.id,
           decision=decision, reason=text, flags=list(submission.flag_reasons or []), previous_score=before,
           score=submission.score)
    _tell_score_changed(session, submission, before, reason=text, decision=decision)
    session.flush()
    return submission


def _tell_score_changed(session: Session, submission: Submission, before: float | None, *,
                        reason: str | None = None, decision: str | None = None) -> None:
    """The learner's inbox (and mail) says that staff changed the attempt's score, to what, and why."""
    from flask_babel import force_locale

    from academy.inbox.services import tell

    learner = submission.user
    locale = learner.locale or "ko"
    with force_locale(locale):
        title = submission.assignment.title(locale)
        old = "—" if before is None else f"{before:g}"
        new = "—" if submission.score is None else f"{submission.score:g}"
        if decision == CONFIRMED:
            body = _("Your instructor checked attempt %(n)d at %(title)s and its score of %(new)s stands.",
                     n=submission.attempt, title=title, new=new)
        elif decision == REJECTED:
            body = _("Your instructor checked attempt %(n)d at %(title)s and did not accept its score: it counts "
                     "as 0. Score before: %(old)s.", n=submission.attempt, title=title, old=old)
        else:
            body = _("Your instructor graded attempt %(n)d at %(title)s. Score before: %(old)s. Score now: %(new)s.",
                     n=submission.attempt, title=title, old=old, new=new)
        if reason:
            body += "\n\n" + _("Reason: %(reason)s", reason=reason)
        tell(session, learner, "score_changed", _("Your score for %(title)s was updated", title=title), body,
             link=f"/submissions/{submission.public_id}")


def regrade(session: Session, submissions: list[Submission], *, actor: User) -> list[GradingJob]:
    """Queue a new grading of each submission (after a test was fixed); returns the jobs.

    The caller checks that ``actor`` may manage the course and commits; the jobs are sent then.
    """
    jobs = []
    for submission in submissions:
        submission.status = SubmissionStatus.queued
        job = GradingJob(submission=submission, reason="regrade", requested_by_id=actor.id)
        session.add(job)
        jobs.append(job)
        record(session, "submission.regrade", actor=actor, target_type="submission", target_id=submission.id,
               previous_score=submission.score)
    session.flush()
    for job in jobs:
        queue_grading(session, job)
    return jobs


def queue_grading(session: Session, job: GradingJob, *, now: dt.datetime | None = None) -> None:
    """Send ``job``'s message when the caller's transaction commits, noting when (``published_at``).

    The stale-job sweeper (``academy.grading.worker.requeue_stale``) re-sends a queued job
    whose message went out longer ago than it should take to start, so a message lost on
    the way (a broker down at the commit) delays a grade but never loses it.
    """
    from academy.jobs import enqueue_after_commit

    job.published_at = now or utcnow()
    session.flush()
    enqueue_after_commit(session, "academy.grade", job.id)


def get_submission_for(session: Session, public_id: str, user: User) -> Submission:
    """A submission by its public id, visible to its learner, the course's staff and admins.

    Raises NotFound otherwise (so ids of others' work reveal nothing).
    """
    from academy.permissions import can_manage_course

    submission = session.scalar(select(Submission).where(Submission.public_id == public_id))
    if submission is None or (
        submission.user_id != user.id and not can_manage_course(user, submission.assignment.course)
    ):
        raise NotFound(_("No such submission."))
    return submission


def submissions_of(session: Session, assignment: Assignment, user: User) -> list[Submission]:
    """A learner's attempts at an assignment, newest first."""
    return list(session.scalars(
        select(Submission)
        .where(Submission.assignment_id == assignment.id, Submission.user_id == user.id)
        .order_by(Submission.attempt.desc())
    ))


def pending_jobs(session: Session, *, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[GradingJob]:
    """Queued jobs waiting longer than ``older_than`` and running jobs whose lease ran out."""
    now = now or utcnow()
    return list(session.scalars(
        select(GradingJob).where(
            ((GradingJob.state == JobState.queued) & (GradingJob.created_at < now - older_than))
            | ((GradingJob.state == JobState.running) & (GradingJob.lease_until < now))
        ).order_by(GradingJob.id)
    ))
