"""Publishing a new assignment version: send it for checking, read the outcome, confirm (academy.teaching.drafts).

Routes on the ``teaching`` blueprint (``/teach``); thin: the rules are in :mod:`academy.teaching.drafts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from academy.catalog.models import Assignment
from academy.errors import AcademyError
from academy.extensions import db
from academy.grading.models import AssignmentRelease, Submission
from academy.jobs import enqueue_after_commit
from academy.permissions import can_manage_course
from academy.teaching import drafts
from academy.teaching.views import bp
from academy.web.access import staff_required
from academy.web.loaders import get_assignment_or_404
from academy.web.uploads import uploaded_files


def _data_dir() -> Path:
    return Path(current_app.config["ACADEMY_DATA_DIR"])


def _managed(assignment_id: int) -> Assignment:
    """The assignment, when the signed-in user manages its course (a 404 for others: nothing is revealed)."""
    assignment = get_assignment_or_404(assignment_id)
    if not can_manage_course(current_user, assignment.course):
        abort(404)
    return assignment


def send_for_checking(assignment: Assignment, files: dict[str, bytes], origin: str) -> Any:
    """Keep ``files`` in a draft, queue its check, and answer with the draft's page (or back, with the error)."""
    try:
        draft = drafts.start(db.session, _data_dir(), assignment, files, actor=current_user, origin=origin)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("teaching.publish", assignment_id=assignment.id), 303)
    enqueue_after_commit(db.session, "academy.check_version", draft.token)
    db.session.commit()
    return redirect(url_for("teaching.publish_draft", assignment_id=assignment.id, token=draft.token), 303)


@bp.route("/assignments/<id:assignment_id>/publish")
@staff_required
def publish(assignment_id: int) -> Any:
    """Where a new version starts: the versions so far, an upload, the latest checks."""
    assignment = _managed(assignment_id)
    versions = db.session.scalars(
        select(AssignmentRelease).where(AssignmentRelease.assignment_id == assignment.id)
        .order_by(AssignmentRelease.version.desc())).all()
    store, _blobs = drafts.stores(_data_dir())
    return render_template("teaching/publish.html", assignment=assignment, versions=versions,
                           recent=store.recent(assignment.id), authoring=_authoring_lab(assignment))


def _authoring_lab(assignment: Assignment) -> dict[str, Any] | None:
    """The signed-in user's authoring lab for the assignment's course: offered (labs configured with an authoring
    profile) and, when open, the lab session; None when this portal has no authoring lab."""
    from academy.labs.models import LabSession
    from academy.labs.profiles import AUTHORING, configured_profiles
    from academy.labs.queue import active_session

    settings = current_app.config["ACADEMY_SETTINGS"]
    if not settings.labs_enabled or AUTHORING not in configured_profiles(settings):
        return None
    lab: LabSession | None = active_session(db.session, current_user.id)
    if lab is not None and (lab.profile != AUTHORING or lab.course_id != assignment.course_id):
        lab = None
    return {"lab": lab, "profile": AUTHORING}


@bp.route("/assignments/<id:assignment_id>/publish", methods=["POST"])
@staff_required
def start_publish(assignment_id: int) -> Any:
    """Source notebooks go to the checks (nothing is released yet): uploaded, or (``source=lab``) read from the
    signed-in instructor's authoring lab through the contents API."""
    assignment = _managed(assignment_id)
    if request.form.get("source") != "lab":
        return send_for_checking(assignment, uploaded_files(), "upload")
    from academy.labs import LabRefused
    from academy.labs.hub import HubError, client_for
    from academy.labs.notebooks import pull_sources

    try:
        files = pull_sources(client_for(current_app.config["ACADEMY_SETTINGS"]), current_user, assignment)
    except LabRefused as exc:
        flash(str(exc), "danger")
        return redirect(url_for("teaching.publish", assignment_id=assignment.id), 303)
    except HubError:
        flash(_("The lab server is not reachable right now, so your notebooks could not be read. Try again in a "
                "few minutes, or upload them instead."), "danger")
        return redirect(url_for("teaching.publish", assignment_id=assignment.id), 303)
    return send_for_checking(assignment, files, "lab")


def _draft_or_404(assignment: Assignment, token: str) -> drafts.Draft:
    store, _blobs = drafts.stores(_data_dir())
    draft = store.load(token)
    if draft is None or draft.assignment_id != assignment.id:
        abort(404)
    return draft


@bp.route("/assignments/<id:assignment_id>/publish/<token>")
@staff_required
def publish_draft(assignment_id: int, token: str) -> Any:
    """The checks' outcome: the problems (notebook and cell), or what changes, and the confirm step."""
    assignment = _managed(assignment_id)
    draft = _draft_or_404(assignment, token)
    return render_template("teaching/publish_draft.html", assignment=assignment, draft=draft,
                           stalled=drafts.stalled(draft),
                           current=drafts.current_version(db.session, assignment),
                           attempts=db.session.scalar(select(func.count()).select_from(Submission).where(
                               Submission.assignment_id == assignment.id)) or 0)


@bp.route("/assignments/<id:assignment_id>/publish/<token>", methods=["POST"])
@staff_required
def confirm_publish(assignment_id: int, token: str) -> Any:
    """Release the checked version; regrade existing attempts when staff chose so."""
    assignment = _managed(assignment_id)
    draft = _draft_or_404(assignment, token)
    try:
        drafts.confirm(db.session, _data_dir(), draft, actor=current_user, regrade=request.form.get("regrade", ""))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        enqueue_after_commit(db.session, "academy.publish_version", draft.token)
        db.session.commit()
        flash(_("The new version is being released; learners get it in a moment."), "info")
    return redirect(url_for("teaching.publish_draft", assignment_id=assignment.id, token=token), 303)


@bp.route("/assignments/<id:assignment_id>/publish/<token>/retry", methods=["POST"])
@staff_required
def retry_publish(assignment_id: int, token: str) -> Any:
    """Send a stalled or failed check or release again."""
    assignment = _managed(assignment_id)
    draft = _draft_or_404(assignment, token)
    try:
        task = drafts.retry(db.session, _data_dir(), draft, actor=current_user)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        enqueue_after_commit(db.session, task, draft.token)
        db.session.commit()
    return redirect(url_for("teaching.publish_draft", assignment_id=assignment.id, token=token), 303)


@bp.route("/assignments/<id:assignment_id>/publish/<token>/status")
@staff_required
def publish_status(assignment_id: int, token: str) -> Any:
    """The draft's state as JSON, polled by its page while a job works on it."""
    from flask import jsonify

    draft = _draft_or_404(_managed(assignment_id), token)
    return jsonify({"status": draft.state, "finished": draft.finished})


PROBLEM_LABELS = {
    "invalid": lambda: _("Not a valid source notebook"),
    "markers": lambda: _("Solution or hidden-test markers do not match"),
    "solution_not_full": lambda: _("Your solution does not get full marks"),
    "learner_not_zero": lambda: _("The learner version already gets points"),
    "grader_failed": lambda: _("The grader could not run the notebook"),
}
CHANGE_LABELS = {
    "added": lambda: _("Graded cell added"),
    "removed": lambda: _("Graded cell removed"),
    "points": lambda: _("Points changed"),
    "tests": lambda: _("Tests changed"),
    "hidden_tests": lambda: _("Hidden tests changed"),
}
STATE_LABELS = {
    "checking": lambda: _("Being checked"),
    "ready": lambda: _("Passed the checks: waiting for your confirmation"),
    "refused": lambda: _("Did not pass the checks"),
    "releasing": lambda: _("Being released"),
    "released": lambda: _("Released"),
    "failed": lambda: _("Could not be finished"),
}


@bp.app_context_processor
def _publish_labels() -> dict[str, Any]:
    def label(table: dict[str, Any], code: str) -> str:
        return table[code]() if code in table else code
    return {"publish_problem_label": lambda c: label(PROBLEM_LABELS, c),
            "publish_change_label": lambda c: label(CHANGE_LABELS, c),
            "publish_state_label": lambda c: label(STATE_LABELS, c)}
