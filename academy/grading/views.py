"""Assignment pages: download, submit (with preflight), follow grading, see scores and feedback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from itsdangerous import BadSignature
from sqlalchemy import select

from academy.catalog.models import Assignment
from academy.completion.services import refresh_safely
from academy.errors import AcademyError, NotFound
from academy.extensions import db, limiter
from academy.grading import services
from academy.grading.models import AssignmentRelease, Submission
from academy.grading.responses import PENDING_MAX_AGE, accept_files, pending_serializer, submission_files
from academy.grading.standing import Standing, cell_views, learner_standing
from academy.grading.storage import feedback_store
from academy.permissions import can_manage_course
from academy.web.access import login_required, staff_required
from academy.web.loaders import get_assignment_or_404
from academy.web.security import safe_next_path
from academy.web.uploads import uploaded_files

bp = Blueprint("grading", __name__)

def _cohort(assignment: Assignment) -> Any:
    """The cohort through which the current user takes ``assignment``, or None."""
    try:
        return services.learner_cohort(db.session, assignment, current_user)
    except AcademyError:
        return None


def _may_take(assignment: Assignment) -> bool:
    return _cohort(assignment) is not None


def _check_access(assignment: Assignment, cohort: Any = None) -> bool:
    """Enrolled learners take the assignment; the course's staff may look. Others get a 404."""
    staff = can_manage_course(current_user, assignment.course)
    if not staff and cohort is None and not _may_take(assignment):
        abort(404)
    return staff


@bp.route("/assignments/<id:assignment_id>")
@login_required
def assignment(assignment_id: int) -> Any:
    """An assignment: its notebooks, deadline, attempts, and the upload form."""
    row = get_assignment_or_404(assignment_id)
    cohort = _cohort(row)
    staff = _check_access(row, cohort)
    context: dict[str, Any] = {"assignment": row, "staff": staff, "standing": None, "release": None}
    with contextlib.suppress(NotFound):
        context["release"] = services.current_release(db.session, row)
    context["can_submit"] = cohort is not None
    attempts = 0
    if cohort is not None:
        context["standing"] = learner_standing(db.session, row, current_user, cohort=cohort, staff=staff)
        attempts = len(context["standing"].attempts)
    max_attempts = row.policy("max_attempts")
    context["attempts_left"] = None if max_attempts is None else max(max_attempts - attempts, 0)
    context["labs"] = current_app.config["ACADEMY_SETTINGS"].labs_enabled
    context["quota"] = None
    context["gpu_lab"] = False  # a GPU course: the CPU is offered beside it (the way out of a queue or a refusal)
    if context["labs"]:
        from academy.labs.profiles import configured_profiles

        profile = configured_profiles(current_app.config["ACADEMY_SETTINGS"]).get(row.course.lab_profile)
        context["gpu_lab"] = profile is not None and profile.uses_gpu
    context["gpu_budget_out"] = None  # the cohort's or company's GPU budget is used up: the lab opens on a CPU
    if context["gpu_lab"] and cohort is not None:
        from academy.labs import budgets

        spent = budgets.exhausted_budget(db.session, current_user, cohort)
        context["gpu_budget_out"] = budgets.refusal_message(spent) if spent is not None else None
    if context["labs"] and row.course.gpu_hour_quota:
        from academy.labs.queue import quota_for

        context["quota"] = quota_for(db.session, current_user, row.course)
    return render_template("grading/assignment.html", **context)


@bp.route("/assignments/<id:assignment_id>/notebooks/<name>")
@login_required
def download(assignment_id: int, name: str) -> Any:
    """The released (student) version of one notebook, to work on offline or in the lab."""
    row = get_assignment_or_404(assignment_id)
    _check_access(row)
    release = services.current_release(db.session, row)
    if name not in row.notebooks:
        abort(404)
    data = services.released_notebook(release, name)
    # A notebook is UTF-8 JSON (nbformat): saying so keeps Korean text intact in whatever opens the download.
    return Response(data, content_type="application/x-ipynb+json; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/assignments/<id:assignment_id>/submit", methods=["POST"])
@login_required
@limiter.limit("30 per minute")
def submit(assignment_id: int) -> Any:
    """Upload notebooks; preflight them; accept, or explain what is wrong and offer to restore."""
    row = get_assignment_or_404(assignment_id)
    if not _may_take(row):
        abort(404)
    pending = request.form.get("pending")
    if pending:
        try:
            payload = pending_serializer().loads(pending, max_age=PENDING_MAX_AGE)
        except BadSignature:
            flash(_("That upload has expired. Please choose the file again."), "danger")
            return redirect(url_for("grading.assignment", assignment_id=row.id))
        if payload.get("assignment") != row.id or payload.get("user") != current_user.id:
            abort(404)
        files = {name: submission_files().get(digest) for name, digest in payload["files"].items()}
        origin = "lab" if payload.get("origin") == "lab" else "upload"
    else:
        files = uploaded_files()
        origin = "upload"
    return accept_files(row, files, origin=origin)


def _standing_of(submission: Submission) -> tuple[Standing, bool]:
    """The submitting learner's standing on the assignment, as the current viewer may see it."""
    staff = can_manage_course(current_user, submission.assignment.course)
    return learner_standing(db.session, submission.assignment, submission.user, staff=staff), staff


@bp.route("/submissions/<public_id>")
@login_required
def submission(public_id: str) -> Any:
    """A submission: live status, then per-question scores and feedback."""
    row = services.get_submission_for(db.session, public_id, current_user)
    standing, staff = _standing_of(row)
    return render_template("grading/submission.html", submission=row, standing=standing,
                           attempt=standing.attempt(row), cells=cell_views(row, held=standing.held), staff=staff)


@bp.route("/submissions/<public_id>/grade", methods=["POST"])
@staff_required
def grade_by_hand(public_id: str) -> Any:
    """Instructors give points to written answers and comment on any question."""
    row = _staff_submission(public_id)
    back = "grading.feedback" if request.form.get("back") == "feedback" else "grading.submission"
    points: dict[int, float] = {}
    comments: dict[int, str] = {}
    names = {v.cell.id: v.name for v in cell_views(row, held=False)}
    try:
        for key, value in request.form.items():
            if key.startswith("points-") and key[7:].isdigit() and value.strip():
                points[int(key[7:])] = float(value.replace(",", "."))
            elif key.startswith("comment-") and key[8:].isdigit():
                comments[int(key[8:])] = value
    except ValueError:
        flash(_("Points must be numbers."), "danger")
    else:
        _save(row, lambda: services.grade_by_hand(db.session, row, points, actor=current_user, comments=comments,
                                                  names=names),
              _("Saved. The learner sees the new points and comments now."))
    return redirect(safe_next_path(request.form.get("next")) or url_for(back, public_id=row.public_id), 303)


def _staff_submission(public_id: str) -> Submission:
    row = services.get_submission_for(db.session, public_id, current_user)
    if not can_manage_course(current_user, row.assignment.course):
        abort(403)
    return row


def _save(row: Submission, change: Callable[[], object], done: str) -> None:
    """Apply a staff change to a submission, refresh the learner's completion and commit; on refusal roll back."""
    try:
        change()
        refresh_safely(db.session, row.user, row.assignment.course)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(done, "success")


def _back(row: Submission) -> str:
    """Where a staff action on a submission returns: the grading queue it came from, else the submission."""
    return safe_next_path(request.form.get("next")) or url_for("grading.submission", public_id=row.public_id)


@bp.route("/submissions/<public_id>/override", methods=["POST"])
@staff_required
def override(public_id: str) -> Any:
    """Set an autograded question's points by hand, with a reason the learner reads."""
    row = _staff_submission(public_id)
    names = {v.cell.id: v.name for v in cell_views(row, held=False)}
    try:
        cell_id = int(request.form.get("cell", ""))
        points = float(request.form.get("points", "").replace(",", "."))
    except ValueError:
        flash(_("Points must be numbers."), "danger")
        return redirect(_back(row), 303)
    _save(row, lambda: services.override_score(db.session, row, cell_id, points, reason=request.form.get("reason"),
                                               actor=current_user, name=names.get(cell_id)),
          _("Saved. The learner was told the new points and your reason."))
    return redirect(_back(row), 303)


@bp.route("/submissions/<public_id>/flag", methods=["POST"])
@staff_required
def review_flag(public_id: str) -> Any:
    """Confirm or reject the score of an attempt the grader flagged, with a reason."""
    row = _staff_submission(public_id)
    _save(row, lambda: services.review_flag(db.session, row, request.form.get("decision", ""),
                                            reason=request.form.get("reason"), actor=current_user),
          _("Decided. The learner was told."))
    return redirect(_back(row), 303)


@bp.route("/submissions/<public_id>/status")
@login_required
def submission_status(public_id: str) -> Any:
    """The status as JSON, polled by the submission page until grading finishes."""
    row = services.get_submission_for(db.session, public_id, current_user)
    standing, _staff = _standing_of(row)
    attempt = standing.attempt(row)
    return jsonify({"status": row.status.value, "finished": row.status.finished, **standing.as_json(),
                    "attempt": {"number": row.attempt, "counts": attempt.counts, "score": attempt.final_score,
                                "visible_score": attempt.visible_score, "visible_max_score": attempt.visible_max,
                                "max_score": attempt.max_score, "waiting_for_instructor": attempt.waiting}})


@bp.route("/submissions/<public_id>/feedback")
@login_required
def feedback(public_id: str) -> Any:
    """The detailed feedback, built now from the stored results: code, outputs, tests, comments."""
    from academy.grading.feedback import submission_feedback

    row = services.get_submission_for(db.session, public_id, current_user)
    standing, staff = _standing_of(row)
    if not row.status.finished:
        return redirect(url_for("grading.submission", public_id=row.public_id), 303)
    views = cell_views(row, held=standing.held)
    notebooks = submission_feedback(row, views, current_app.config["ACADEMY_DATA_DIR"])
    return render_template("grading/feedback.html", submission=row, standing=standing, attempt=standing.attempt(row),
                           notebooks=notebooks, staff=staff)


@bp.route("/submissions/<public_id>/feedback/nbgrader")
@staff_required
def nbgrader_feedback(public_id: str) -> Any:
    """nbgrader's own feedback file, for the course's staff, in a sandbox where no script runs."""
    row = services.get_submission_for(db.session, public_id, current_user)
    if not can_manage_course(current_user, row.assignment.course):
        abort(404)
    if not row.feedback_sha256:
        abort(404)
    html = feedback_store(current_app.config["ACADEMY_DATA_DIR"]).get(row.feedback_sha256)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; sandbox"
    )
    return response


@bp.route("/assignments/<id:assignment_id>/gradebook")
@staff_required
def gradebook(assignment_id: int) -> Any:
    """Instructor view of an assignment: every attempt, with scores, flags and regrading."""
    row = get_assignment_or_404(assignment_id)
    if not can_manage_course(current_user, row.course):
        abort(403)
    rows = db.session.scalars(
        select(Submission).where(Submission.assignment_id == row.id)
        .order_by(Submission.user_id, Submission.attempt.desc())
    ).all()
    versions = db.session.scalars(
        select(AssignmentRelease).where(AssignmentRelease.assignment_id == row.id)
        .order_by(AssignmentRelease.version.desc())
    ).all()
    return render_template("grading/gradebook.html", assignment=row, submissions=rows, versions=versions)


@bp.route("/assignments/<id:assignment_id>/extensions", methods=["POST"])
@staff_required
def grant_extension(assignment_id: int) -> Any:
    """Give one learner (by email) a personal deadline: the end of the chosen day, KST."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from academy.users.services import find_user_by_email

    row = get_assignment_or_404(assignment_id)
    if not can_manage_course(current_user, row.course):
        abort(403)
    learner = find_user_by_email(db.session, request.form.get("email", ""))
    try:
        day = dt.date.fromisoformat(request.form.get("due_on", ""))
    except ValueError:
        day = None
    if learner is None or day is None:
        flash(_("Enter the learner's email and the new due date."), "danger")
        return redirect(url_for("grading.gradebook", assignment_id=row.id), 303)
    due_at = dt.datetime.combine(day, dt.time(23, 59), tzinfo=ZoneInfo("Asia/Seoul")).astimezone(dt.UTC)
    try:
        services.grant_extension(db.session, row, learner, due_at, actor=current_user,
                                 reason=request.form.get("reason"))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("%(email)s now has until %(day)s 23:59 KST.", email=learner.email, day=day.isoformat()), "success")
    return redirect(url_for("grading.gradebook", assignment_id=row.id), 303)


@bp.route("/assignments/<id:assignment_id>/versions", methods=["POST"])
@staff_required
def upload_version(assignment_id: int) -> Any:
    """Upload new source notebooks: they go through the publish checks, and staff confirm before release."""
    from academy.teaching.publish_views import send_for_checking

    row = get_assignment_or_404(assignment_id)
    if not can_manage_course(current_user, row.course):
        abort(403)
    return send_for_checking(row, uploaded_files(), "upload")


@bp.route("/assignments/<id:assignment_id>/regrade", methods=["POST"])
@staff_required
def regrade(assignment_id: int) -> Any:
    """Regrade one submission, one learner's attempts, or the whole assignment."""
    row = get_assignment_or_404(assignment_id)
    if not can_manage_course(current_user, row.course):
        abort(403)
    query = select(Submission).where(Submission.assignment_id == row.id)
    if request.form.get("submission"):
        query = query.where(Submission.public_id == request.form["submission"])
    elif request.form.get("user", type=int):
        query = query.where(Submission.user_id == request.form.get("user", type=int))
    targets = list(db.session.scalars(query))
    jobs = services.regrade(db.session, targets, actor=current_user)
    db.session.commit()  # sends the grading jobs' messages
    flash(_("%(n)d submissions will be graded again.", n=len(jobs)), "info")
    return redirect(url_for("grading.gradebook", assignment_id=row.id), 303)
