"""Lab pages: open a lab, follow its start, stop it; staff see and stop labs; the hub reports events."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from academy.catalog.models import Assignment, Course
from academy.extensions import csrf, db, limiter
from academy.labs import services
from academy.labs.hub import HubError, HubUnavailable
from academy.labs.models import LabSession, LabState
from academy.permissions import can_manage_course, is_admin
from academy.web.access import hub_service, login_required, staff_required

bp = Blueprint("labs", __name__, url_prefix="/labs")


def _settings() -> Any:
    return current_app.config["ACADEMY_SETTINGS"]


def _client() -> Any:
    try:
        return services.client_for(_settings())
    except HubUnavailable:
        abort(404)  # labs are not configured on this portal


def _own_lab(lab_id: int) -> LabSession:
    lab = db.session.get(LabSession, lab_id)
    if lab is None or (lab.user_id != current_user.id and not _may_control(lab)):
        abort(404)
    return lab


def _may_control(lab: LabSession) -> bool:
    return is_admin(current_user) or can_manage_course(current_user, lab.course)


@bp.route("/open/<id:course_id>", methods=["POST"])
@login_required
@limiter.limit("20 per minute")
def open_lab(course_id: int) -> Any:
    """"Open lab": check enrollment, profile and quota, then queue or start the server."""
    course = db.session.get(Course, course_id)
    if course is None or not course.active:
        abort(404)
    assignment = None
    if request.form.get("assignment_id", "").isdigit():
        assignment = db.session.get(Assignment, int(request.form["assignment_id"]))
        if assignment is None or assignment.course_id != course.id:
            abort(404)
    back = url_for("grading.assignment", assignment_id=assignment.id) if assignment else url_for(
        "catalog.course", slug=course.slug)
    client = _client()
    try:
        lab = services.launch(db.session, client, _settings(), user=current_user, course=course,
                              assignment=assignment, profile_name=request.form.get("profile") or None)
    except services.LabRefused as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(back), 303
    return redirect(url_for("labs.launch_page", lab_id=lab.id), 303)


@bp.route("/<id:lab_id>")
@login_required
def launch_page(lab_id: int) -> Any:
    """Progress of a launch (or a place in the GPU queue); the page follows the status URL."""
    lab = _own_lab(lab_id)
    return render_template("labs/launch.html", lab=lab, status=_status(lab, refresh=False))


@bp.route("/<id:lab_id>/status")
@login_required
def status(lab_id: int) -> Any:
    lab = _own_lab(lab_id)
    return jsonify(_status(lab, refresh=lab.user_id == current_user.id))


def _status(lab: LabSession, *, refresh: bool) -> dict[str, Any]:
    settings = _settings()
    hub_error = None
    if refresh and lab.state.active:
        try:
            services.refresh(db.session, _client(), settings, lab)
        except HubUnavailable:
            db.session.rollback()
            hub_error = _("The lab server is not reachable right now. We keep trying; your files are safe.")
        except HubError as exc:
            db.session.rollback()
            current_app.logger.error("lab %s: %s", lab.id, exc)
            hub_error = _("The lab server answered with an error. We keep trying.")
    body: dict[str, Any] = {
        "state": lab.state.value,
        "progress": 100 if lab.state == LabState.running else lab.progress,
        "message": _message(lab),
        "finished": not lab.state.active or lab.state == LabState.running,
        "hub_error": hub_error,
    }
    if lab.state == LabState.queued:
        body["position"] = services.place_in_line(db.session, lab)
        body["message"] = _("All GPUs are in use. You are number %(n)d in line.", n=body["position"] or 1)
    if lab.state == LabState.running:
        body["url"] = services.lab_url(settings, lab)
        minutes = services.quota_warning(db.session, lab, settings)
        if minutes is not None:
            body["warning"] = _("About %(m)d minutes of GPU time left in this course. Save your work.",
                                m=max(int(minutes), 0))
    return body


def _message(lab: LabSession) -> str:
    if lab.state == LabState.failed:
        return {
            "hub_down": _("The lab server is not reachable right now. Please try again in a few minutes; your "
                          "files are safe. If it keeps happening, tell your instructor."),
            "timeout": _("Your lab took too long to start and was stopped. Please try again."),
        }.get(lab.stop_reason or "", _("Your lab could not be started. Please try again; if it fails again, tell "
                                       "your instructor."))
    if lab.state == LabState.stopped:
        return {
            "quota": _("Your lab was stopped because the course's GPU hours are used up."),
            "idle": _("Your lab was stopped after a long time without activity."),
        }.get(lab.stop_reason or "", _("Your lab has stopped."))
    if lab.state == LabState.cancelled:
        return _("You left the queue.")
    return lab.progress_message or _("Starting your lab")


@bp.route("/<id:lab_id>/stop", methods=["POST"])
@login_required
def stop(lab_id: int) -> Any:
    lab = _own_lab(lab_id)
    if lab.state.active:
        reason = "user" if lab.user_id == current_user.id else ("admin" if is_admin(current_user) else "instructor")
        services.stop_lab(db.session, _client(), lab, reason=reason, actor=current_user)
        flash(_("The lab was stopped."), "info")
    if lab.user_id != current_user.id:
        return redirect(url_for("labs.manage"), 303)
    return redirect(url_for("labs.launch_page", lab_id=lab.id), 303)


@bp.route("/<id:lab_id>/cpu", methods=["POST"])
@login_required
def take_cpu(lab_id: int) -> Any:
    """Leave the GPU queue and open the lab on a CPU instead."""
    lab = _own_lab(lab_id)
    if lab.user_id != current_user.id:
        abort(404)
    course, assignment = lab.course, lab.assignment
    if lab.state.active:
        services.stop_lab(db.session, _client(), lab, reason="took_cpu", actor=current_user)
    try:
        new = services.launch(db.session, _client(), _settings(), user=current_user, course=course,
                              assignment=assignment, profile_name="cpu")
    except services.LabRefused as exc:
        flash(str(exc), "danger")
        return redirect(url_for("catalog.course", slug=course.slug), 303)
    return redirect(url_for("labs.launch_page", lab_id=new.id), 303)


@bp.route("/hub-events", methods=["POST"])
@hub_service
@csrf.exempt
def hub_events() -> Any:
    """Start/stop events from the hub (hub_config/jupyterhub_config.py: PortalEventHandler)."""
    event = request.get_json(silent=True)
    if not isinstance(event, dict):
        return jsonify({"error": "a JSON object is expected"}), 400
    settings = _settings()
    changed = services.record_hub_event(db.session, services.client_for(settings), settings, event)
    return jsonify({"recorded": changed})


@bp.route("/manage")
@staff_required
def manage() -> Any:
    """Instructors: their learners' labs. Admins: every lab, GPU use per device."""
    query = select(LabSession).where(LabSession.state.in_((LabState.queued, LabState.starting, LabState.running)))
    labs = [lab for lab in db.session.scalars(query.order_by(LabSession.queued_at))
            if is_admin(current_user) or can_manage_course(current_user, lab.course)]
    context: dict[str, Any] = {"labs": labs, "devices": [], "usage": [], "companies": []}
    if is_admin(current_user):
        settings = _settings()
        context["devices"] = services.device_report(db.session, settings)
        context["usage"] = services.gpu_usage_by_course(db.session)
        context["companies"] = services.gpu_usage_by_company(db.session)
        db.session.commit()
    return render_template("labs/manage.html", **context)


@bp.app_context_processor
def lab_labels() -> dict[str, Any]:
    def profile_title(name: str) -> str:
        from academy.i18n import current_locale

        profile = services.profiles(_settings()).get(name)
        return profile.title_for(current_locale()) if profile else name

    def lab_state_label(state: str) -> str:
        return {
            "queued": _("Waiting for a GPU"), "starting": _("Starting"), "running": _("Running"),
            "stopped": _("Stopped"), "failed": _("Failed"), "cancelled": _("Left the queue"),
        }.get(state, state)

    return {"profile_title": profile_title, "lab_state_label": lab_state_label}


def _assignment_for_learner(assignment_id: int) -> Assignment:
    from academy.grading.views import _assignment_or_404, _may_take

    row = _assignment_or_404(assignment_id)
    if not _may_take(row):
        abort(404)
    return row


@bp.route("/assignments/<id:assignment_id>/submit", methods=["POST"])
@login_required
@limiter.limit("30 per minute")
def submit_from_lab(assignment_id: int) -> Any:
    """"Submit from my lab": take the notebook from the running lab, then the same path as an upload."""
    from academy.grading.views import accept_files

    row = _assignment_for_learner(assignment_id)
    try:
        files = services.pull_notebooks(_client(), current_user, row)
    except services.LabRefused as exc:
        flash(str(exc), "danger")
        return redirect(url_for("grading.assignment", assignment_id=row.id), 303)
    except HubError:
        flash(_("The lab server is not reachable right now. Try again in a minute, or download the notebook "
                "from your lab and upload it."), "danger")
        return redirect(url_for("grading.assignment", assignment_id=row.id), 303)
    return accept_files(row, files, origin="lab")


@bp.route("/assignments/<id:assignment_id>/reset/<name>", methods=["POST"])
@login_required
@limiter.limit("10 per minute")
def reset_notebook(assignment_id: int, name: str) -> Any:
    """"Reset to original" in the lab; the learner's version is kept as a backup copy beside it."""
    row = _assignment_for_learner(assignment_id)
    try:
        backup = services.reset_notebook(db.session, _client(), current_user, row, name)
        db.session.commit()
    except services.LabRefused as exc:
        flash(str(exc), "danger")
    except HubError:
        flash(_("The lab server is not reachable right now. Nothing was changed."), "danger")
    else:
        if backup:
            flash(_("The notebook was reset. Your version was kept as %(path)s.", path=backup), "success")
        else:
            flash(_("The original notebook was put into your lab."), "success")
    return redirect(url_for("grading.assignment", assignment_id=row.id), 303)
