"""Lab pages: open a lab, follow its start, stop it; staff see and stop labs; the hub reports events."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.extensions import csrf, db, limiter
from academy.labs import LabRefused, budgets, labels, notebooks, reports
from academy.labs.hub import HubClient, HubError, HubUnavailable, client_for
from academy.labs.launch import launch, stop_lab
from academy.labs.models import LabSession, LabState
from academy.labs.profiles import AUTHORING
from academy.labs.queue import place_in_line
from academy.labs.running import RunningLab, running_lab
from academy.labs.usage import quota_warning, record_hub_event
from academy.permissions import can_manage_course, is_admin
from academy.stats.queries import no_value
from academy.web.access import hub_service, login_required, staff_required
from academy.web.loaders import get_assignment_or_404
from academy.web.security import safe_next_path

bp = Blueprint("labs", __name__, url_prefix="/labs")


def _settings() -> Any:
    return current_app.config["ACADEMY_SETTINGS"]


def _client() -> HubClient:
    try:
        return client_for(_settings())
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
    if request.form.get("profile") == AUTHORING and assignment is not None:
        back = url_for("teaching.publish", assignment_id=assignment.id)
    client = _client()
    try:
        lab = launch(db.session, client, _settings(), user=current_user, course=course,
                     assignment=assignment, profile_name=request.form.get("profile") or None)
    except LabRefused as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(back), 303
    db.session.commit()  # sends the start_lab job
    return redirect(url_for("labs.launch_page", lab_id=lab.id), 303)


@bp.route("/<id:lab_id>")
@login_required
def launch_page(lab_id: int) -> Any:
    """Progress of a launch (or a place in the GPU queue); the page follows the status URL."""
    lab = _own_lab(lab_id)
    return render_template("labs/launch.html", lab=lab, status=_status(lab))


@bp.route("/<id:lab_id>/status")
@login_required
def status(lab_id: int) -> Any:
    """The lab as its row says (the start_lab job keeps it current): no call to the hub."""
    lab = _own_lab(lab_id)
    if lab.user_id == current_user.id and lab.state.active:
        lab.last_seen_at = utcnow()  # still waiting: the sweep keeps the place in line
        db.session.commit()
    return jsonify(_status(lab))


def _status(lab: LabSession) -> dict[str, Any]:
    ready = lab.state == LabState.running and lab.notebook_path is not None
    body: dict[str, Any] = {
        "state": lab.state.value,
        "progress": 100 if ready else lab.progress,
        "message": _message(lab),
        "finished": not lab.state.active or ready,
    }
    if lab.state == LabState.queued:
        body["position"] = place_in_line(db.session, lab)
        body["message"] = _("All GPUs are in use. You are number %(n)d in line.", n=body["position"] or 1)
    if ready:
        body["url"] = _client().lab_url(lab.hub_user, lab.notebook_path)
        minutes = quota_warning(db.session, lab, _settings())
        if minutes is not None:
            body["warning"] = _("About %(m)d minutes of GPU time left in this course. Save your work.",
                                m=max(int(minutes), 0))
        else:
            running_out = budgets.lab_budget_warning(db.session, lab,
                                                     warning_minutes=_settings().lab_quota_warning_minutes)
            if running_out is not None:
                body["warning"] = _("The GPU-hour budget of %(budget)s runs out in about %(m)d minutes, and your "
                                    "lab will then be stopped. Save your work.", budget=running_out[1].title(),
                                    m=max(round(running_out[0]), 1))
    return body


def _message(lab: LabSession) -> str:
    if lab.state == LabState.failed:
        return {
            "hub_down": _("The lab server is not reachable right now. Please try again in a few minutes; your "
                          "files are safe. If it keeps happening, tell your instructor."),
            "timeout": _("Your lab took too long to start and was stopped. Please try again."),
            "too_big": _("No GPU on this server can hold this lab any more. You can open the lab on a CPU "
                         "instead."),
        }.get(lab.stop_reason or "", _("Your lab could not be started. Please try again; if it fails again, tell "
                                       "your instructor."))
    if lab.state == LabState.stopped:
        return {
            "quota": _("Your lab was stopped because the course's GPU hours are used up."),
            "budget": _("Your lab was stopped because the GPU-hour budget it ran under is used up. You can open "
                        "the lab on a CPU."),
            "idle": _("Your lab was stopped after a long time without activity."),
        }.get(lab.stop_reason or "", _("Your lab has stopped."))
    if lab.state == LabState.cancelled:
        if lab.stop_reason == "budget":
            return _("The GPU-hour budget this lab would run under is used up, so it cannot start. You can open "
                     "the lab on a CPU.")
        return _("You left the queue.")
    if lab.state == LabState.running and lab.notebook_path is None:
        return _("Copying the assignment's notebooks")
    return {
        "queued": _("Waiting for a GPU"),
        "requested": _("Asking the lab server to start"),
        "spawning": _("Preparing your workspace"),
        "waiting": _("Starting JupyterLab"),
        "copying": _("Copying the assignment's notebooks"),
        "ready": _("Your lab is ready"),
        "already": _("Your lab is already running"),
    }.get(lab.progress_step or "", _("Starting your lab"))


@bp.route("/<id:lab_id>/stop", methods=["POST"])
@login_required
def stop(lab_id: int) -> Any:
    """Stop a lab (or leave the queue); back to ``next`` when it is a path on this portal."""
    lab = _own_lab(lab_id)
    if lab.state.active:
        reason = "user" if lab.user_id == current_user.id else ("admin" if is_admin(current_user) else "instructor")
        stop_lab(db.session, _client(), _settings(), lab, reason=reason, actor=current_user)
        db.session.commit()
        flash(_("The lab was stopped."), "info")
    back = safe_next_path(request.form.get("next"))
    if back:  # the page the stop button was on (labs/_running.html); only a path on this portal
        return redirect(back, 303)
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
        stop_lab(db.session, _client(), _settings(), lab, reason="took_cpu", actor=current_user)
    try:
        new = launch(db.session, _client(), _settings(), user=current_user, course=course,
                     assignment=assignment, profile_name="cpu")
    except LabRefused as exc:
        db.session.commit()  # the GPU place was given up all the same
        flash(str(exc), "danger")
        return redirect(url_for("catalog.course", slug=course.slug), 303)
    db.session.commit()
    return redirect(url_for("labs.launch_page", lab_id=new.id), 303)


@bp.route("/hub-events", methods=["POST"])
@hub_service
@csrf.exempt
def hub_events() -> Any:
    """Start/stop events from the hub (hub_config/jupyterhub_config.py: PortalEventHandler)."""
    event = request.get_json(silent=True)
    if not isinstance(event, dict):
        return jsonify({"error": "a JSON object is expected"}), 400
    changed = record_hub_event(db.session, _settings(), event)
    db.session.commit()
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
        context["devices"] = reports.device_report(db.session, _settings())
        context["usage"] = reports.gpu_usage_by_course(db.session)
        context["companies"] = reports.gpu_usage_by_company(db.session)
        context["no_company"] = no_value("company")  # the statistics' words for learners who gave none
        db.session.commit()
    # A lab's device as the GPUs table names it ("NVIDIA H200 0"); a bare index reads as "no GPU".
    context["device_names"] = {d.device.index: d.device.name for d in context["devices"]}
    return render_template("labs/manage.html", **context)


@bp.app_context_processor
def lab_labels() -> dict[str, Any]:
    """Template helpers: words for profile keys and lab states (academy.labs.labels) and the learner's open lab."""
    from academy.i18n import current_locale

    def profile_title(name: str) -> str:
        return labels.profile_title(_settings(), name, current_locale())

    def current_lab() -> RunningLab | None:
        """The signed-in learner's own queued, starting or running lab (labs/_running.html)."""
        if not current_user.is_authenticated:
            return None
        return running_lab(db.session, _settings(), current_user, locale=current_locale())

    return {"profile_title": profile_title, "lab_state_label": labels.lab_state_label, "current_lab": current_lab}


def _assignment_for_learner(assignment_id: int) -> Assignment:
    from academy.errors import AcademyError
    from academy.grading.services import learner_cohort

    row = get_assignment_or_404(assignment_id)
    try:
        learner_cohort(db.session, row, current_user)
    except AcademyError:
        abort(404)
    return row


@bp.route("/assignments/<id:assignment_id>/submit", methods=["POST"])
@login_required
@limiter.limit("30 per minute")
def submit_from_lab(assignment_id: int) -> Any:
    """"Submit from my lab": take the notebook from the running lab, then the same path as an upload."""
    from academy.grading.responses import accept_files

    row = _assignment_for_learner(assignment_id)
    try:
        files = notebooks.pull_notebooks(_client(), current_user, row)
    except LabRefused as exc:
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
        backup = notebooks.reset_notebook(db.session, _client(), current_user, row, name)
        db.session.commit()
    except LabRefused as exc:
        flash(str(exc), "danger")
    except HubError:
        flash(_("The lab server is not reachable right now. Nothing was changed."), "danger")
    else:
        if backup:
            flash(_("The notebook was reset. Your version was kept as %(path)s.", path=backup), "success")
        else:
            flash(_("The original notebook was put into your lab."), "success")
    return redirect(url_for("grading.assignment", assignment_id=row.id), 303)
