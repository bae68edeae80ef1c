"""Administration pages.

Every view here is for admins only; each reads the request, calls one service and
commits once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wtforms.fields.choices import SelectChoice

from academy.audit.models import AuditEntry
from academy.catalog.models import Track
from academy.enrollment import services as enrollment_services
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import AcademyError
from academy.extensions import db
from academy.i18n import current_locale
from academy.mail.models import OutboxMessage
from academy.mail.services import MAX_ATTEMPTS
from academy.users import services as user_services
from academy.users.forms import ImportUsersForm
from academy.users.importer import import_employees
from academy.users.models import Company, Role, User
from academy.web.access import admin_required
from academy.web.forms import apply_error
from academy.web.loaders import get_cohort_or_404, get_enrollment_or_404

from .forms import CapacityForm, CohortForm, CompanyBudgetForm, DecisionForm, GpuBudgetForm, RoleForm

bp = Blueprint("admin", __name__, url_prefix="/admin")

SEOUL = ZoneInfo("Asia/Seoul")
PAGE_SIZE = 50


def _seoul_midnight_utc(day: dt.date, *, end_of_day: bool = False) -> dt.datetime:
    local_time = dt.time(23, 59, 59) if end_of_day else dt.time(0, 0)
    return dt.datetime.combine(day, local_time, tzinfo=SEOUL).astimezone(dt.UTC)


def _page() -> int:
    return max(request.args.get("page", 1, type=int) or 1, 1)


@bp.route("/")
@admin_required
def home() -> Any:
    """The admin's home: the statistics dashboard, with counts of users, pending requests and cohorts."""
    from academy.stats.views import render_dashboard

    return render_dashboard(home_counts(db.session))


def home_counts(session: Session) -> dict[str, int]:
    """The counters above the admin's statistics: users, enrollments waiting for approval, cohorts, unsent mail
    (one statement: on every view of the admin's home)."""
    counts = {
        "users": select(func.count()).select_from(User),
        "pending": select(func.count()).select_from(Enrollment).where(Enrollment.status == EnrollmentStatus.pending),
        "cohorts": select(func.count()).select_from(Cohort),
        "outbox": select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None)),
    }
    row = session.execute(select(*[query.scalar_subquery().label(name) for name, query in counts.items()])).one()
    return {name: int(getattr(row, name) or 0) for name in counts}


# --- users ------------------------------------------------------------------------


@bp.route("/users")
@admin_required
def users() -> Any:
    """All accounts, searchable by name, email or company."""
    q = (request.args.get("q") or "").strip()
    query = select(User).order_by(User.id.desc())
    if q:
        like = f"%{q.lower()}%"
        query = query.where(func.lower(User.email).like(like) | func.lower(User.name).like(like))
    page = _page()
    rows = db.session.scalars(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)).all()
    return render_template(
        "admin/users.html", users=rows[:PAGE_SIZE], q=q, page=page, has_next=len(rows) > PAGE_SIZE,
        role_form=RoleForm(),
    )


@bp.route("/users/<id:user_id>/role", methods=["POST"])
@admin_required
def set_role(user_id: int) -> Any:
    """Change a user's role."""
    form = RoleForm()
    user = db.session.get(User, user_id) or abort(404)
    if form.validate_on_submit():
        try:
            user_services.set_role(db.session, user, Role(form.role.data), actor=current_user)
        except AcademyError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("The role of %(email)s is now %(role)s.", email=user.email, role=form.role.data), "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<id:user_id>/active", methods=["POST"])
@admin_required
def set_active(user_id: int) -> Any:
    """Deactivate or reactivate an account."""
    user = db.session.get(User, user_id) or abort(404)
    active = request.form.get("active") == "1"
    try:
        user_services.set_active(db.session, user, active, actor=current_user)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
    return redirect(url_for("admin.users"))


@bp.route("/users/import", methods=["GET", "POST"])
@admin_required
def import_users() -> Any:
    """Import a company's employees from CSV (UTF-8 or CP949): all rows or none."""
    form = ImportUsersForm()
    report = None
    if form.validate_on_submit():
        data = form.file.data.read()
        report = import_employees(
            db.session,
            data,
            actor=current_user,
            secret_key=_secret_key(),
            invite_url_for=lambda token: url_for("auth.reset_password", token=token, _external=True),
        )
        if report.ok:
            db.session.commit()
            flash(_("%(n)d accounts were created. Each person was sent an invitation with a link to set "
                    "a password, valid for 7 days.", n=report.created), "success")
        else:
            db.session.rollback()
            flash(_("Nothing was imported: fix the rows listed below and upload the file again."), "danger")
    status = 200 if report is None or report.ok else 400
    return render_template("admin/import_users.html", form=form, report=report), status


def _secret_key() -> str:
    from flask import current_app

    return current_app.config["SECRET_KEY"]


# --- cohorts and approvals -----------------------------------------------------------


@bp.route("/cohorts", methods=["GET", "POST"])
@admin_required
def cohorts() -> Any:
    """List cohorts and open a new one."""
    form = CohortForm()
    tracks = db.session.scalars(select(Track).where(Track.active.is_(True)).order_by(Track.position)).all()
    form.track_id.choices = [SelectChoice(t.id, t.title(current_locale())) for t in tracks]
    if form.validate_on_submit():
        track = db.session.get(Track, form.track_id.data) or abort(404)
        try:
            enrollment_services.create_cohort(
                db.session,
                track,
                name=form.name.data or "",
                starts_at=_seoul_midnight_utc(form.starts_on.data),
                ends_at=_seoul_midnight_utc(form.ends_on.data, end_of_day=True),
                enroll_closes_at=(
                    _seoul_midnight_utc(form.enroll_closes_on.data, end_of_day=True)
                    if form.enroll_closes_on.data else None
                ),
                capacity=form.capacity.data or 0,
                requires_approval=bool(form.requires_approval.data),
                actor=current_user,
            )
        except AcademyError as exc:
            db.session.rollback()
            apply_error(form, exc)
        else:
            db.session.commit()
            flash(_("The cohort is open."), "success")
            return redirect(url_for("admin.cohorts"))
    rows = db.session.scalars(select(Cohort).order_by(Cohort.starts_at.desc())).all()
    return render_template("admin/cohorts.html", form=form, cohorts=rows)


@bp.route("/cohorts/<id:cohort_id>", methods=["GET", "POST"])
@admin_required
def cohort(cohort_id: int) -> Any:
    """A cohort's roster with each enrollment's history; a POST moves a learner to another cohort of the track."""
    row = get_cohort_or_404(cohort_id)
    if request.method == "POST":
        return _move_learner(row)
    from academy.labs.budgets import budget_of

    return render_template(
        "admin/cohort.html", cohort=row, roster=enrollment_services.roster(db.session, row),
        capacity_form=CapacityForm(capacity=row.capacity),
        move_targets=enrollment_services.move_targets(db.session, row),
        budget_form=GpuBudgetForm(hours=row.gpu_budget_hours), gpu_budget=budget_of(db.session, row),
        warning_minutes=current_app.config["ACADEMY_SETTINGS"].lab_quota_warning_minutes,
    )


def _move_learner(source: Cohort) -> Any:
    """Move one learner of ``source`` (form fields ``enrollment_id`` and ``target``); flashes the outcome."""
    back = redirect(url_for("admin.cohort", cohort_id=source.id))
    # The CSRF token was checked before the view (CSRFProtect covers every POST).
    enrollment_id = request.form.get("enrollment_id", type=int)
    target_id = request.form.get("target", type=int)
    enrollment = db.session.get(Enrollment, enrollment_id) if enrollment_id else None
    target = db.session.get(Cohort, target_id) if target_id else None
    if enrollment is None or enrollment.cohort_id != source.id:
        flash(_("Choose a learner of this cohort to move."), "danger")
        return back
    if target is None:
        flash(_("Choose the cohort to move the learner to."), "danger")
        return back
    try:
        moved = enrollment_services.move_enrollment(db.session, enrollment, target, actor=current_user)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return back
    db.session.commit()
    if moved.status is EnrollmentStatus.enrolled:
        flash(_("%(name)s moved to %(cohort)s and holds a seat there.", name=moved.user.name,
                cohort=target.name), "success")
    else:
        position = enrollment_services.waitlist_position(db.session, moved) or 0
        flash(_("%(name)s moved to %(cohort)s, number %(n)d on its waitlist.", name=moved.user.name,
                cohort=target.name, n=position), "success")
    return back


@bp.route("/cohorts/<id:cohort_id>/capacity", methods=["POST"])
@admin_required
def cohort_capacity(cohort_id: int) -> Any:
    """Change a cohort's capacity (raising it promotes waiting learners)."""
    row = get_cohort_or_404(cohort_id)
    form = CapacityForm()
    if form.validate_on_submit():
        try:
            enrollment_services.set_capacity(db.session, row, form.capacity.data or 0, actor=current_user)
        except AcademyError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("The capacity is changed."), "success")
    return redirect(url_for("admin.cohort", cohort_id=cohort_id))


# --- GPU budgets ----------------------------------------------------------------------


@bp.route("/gpu-budgets")
@admin_required
def gpu_budgets() -> Any:
    """Every cohort's and company's GPU-hour budget against its use; setting a company's budget."""
    from academy.labs.budgets import all_budgets

    settings = current_app.config["ACADEMY_SETTINGS"]
    return render_template("admin/gpu_budgets.html", budgets=all_budgets(db.session), form=_company_budget_form(),
                           warning_minutes=settings.lab_quota_warning_minutes)


def _company_budget_form() -> CompanyBudgetForm:
    form = CompanyBudgetForm()
    form.company_id.choices = [SelectChoice(c.id, f"{c.name} ({c.business_number})")
                               for c in db.session.scalars(select(Company).order_by(Company.name))]
    return form


@bp.route("/gpu-budgets/company", methods=["POST"])
@admin_required
def company_gpu_budget() -> Any:
    """Set or clear a company's GPU-hour budget (per calendar year)."""
    form = _company_budget_form()
    if form.validate_on_submit():
        _save_gpu_budget(db.session.get(Company, form.company_id.data) or abort(404), form)
    else:
        _flash_errors(form)
    return redirect(url_for("admin.gpu_budgets"))


@bp.route("/cohorts/<id:cohort_id>/gpu-budget", methods=["POST"])
@admin_required
def cohort_gpu_budget(cohort_id: int) -> Any:
    """Set or clear a cohort's GPU-hour budget."""
    row = get_cohort_or_404(cohort_id)
    form = GpuBudgetForm()
    if form.validate_on_submit():
        _save_gpu_budget(row, form)
    else:
        _flash_errors(form)
    return redirect(url_for("admin.cohort", cohort_id=cohort_id))


def _save_gpu_budget(owner: Cohort | Company, form: GpuBudgetForm) -> None:
    """Save the budget, commit and tell the admin what it means now (used up, running out), or why not."""
    from academy.labs import budgets

    try:
        change = budgets.set_budget(db.session, owner, form.hours.data, actor=current_user,
                                    below_used_ok=bool(form.below_used_ok.data))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return
    db.session.commit()
    budget = change.after
    if budget is None:
        flash(_("%(name)s has no GPU budget now.", name=owner.name), "success")
        return
    flash(_("The GPU budget of %(budget)s is now %(hours)s hours; %(used)s hours are used.", budget=budget.title(),
            hours=f"{budget.hours:,.2f}", used=f"{budget.used:,.2f}"), "success")
    minutes = budget.minutes_left
    if budget.exhausted:
        flash(_("This budget is used up: the %(n)d GPU labs running under it are stopped within a minute, and new "
                "GPU labs under it are refused (learners are offered the CPU).", n=budget.running), "warning")
    elif minutes is not None and minutes <= current_app.config["ACADEMY_SETTINGS"].lab_quota_warning_minutes:
        flash(_("At the current use this budget runs out in about %(m)d minutes: the learners of the %(n)d GPU labs "
                "under it are warned, and their labs are then stopped.", m=max(round(minutes), 1), n=budget.running),
              "warning")


def _flash_errors(form: GpuBudgetForm) -> None:
    for errors in form.errors.values():
        for error in errors:
            flash(str(error), "danger")


@bp.route("/approvals")
@admin_required
def approvals() -> Any:
    """Enrollment requests waiting for a decision."""
    return render_template(
        "admin/approvals.html", requests=enrollment_services.pending_requests(db.session), form=DecisionForm()
    )


@bp.route("/enrollments/<id:enrollment_id>/<any(approve, reject):decision>", methods=["POST"])
@admin_required
def decide(enrollment_id: int, decision: str) -> Any:
    """Approve or reject a pending request."""
    enrollment = get_enrollment_or_404(enrollment_id)
    form = DecisionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        if decision == "approve":
            enrollment_services.approve(db.session, enrollment, actor=current_user)
        else:
            enrollment_services.reject(db.session, enrollment, actor=current_user, note=form.note.data)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("Decision saved for %(email)s.", email=enrollment.user.email), "success")
    return redirect(url_for("admin.approvals"))


# --- outbox and audit ----------------------------------------------------------------


@bp.route("/outbox")
@admin_required
def outbox() -> Any:
    """Messages the portal sent or holds (reset links when no SMTP is configured)."""
    page = _page()
    rows = db.session.scalars(
        select(OutboxMessage).order_by(OutboxMessage.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    ).all()
    return render_template("admin/outbox.html", messages=rows[:PAGE_SIZE], page=page,
                           has_next=len(rows) > PAGE_SIZE, max_attempts=MAX_ATTEMPTS)


@bp.route("/audit")
@admin_required
def audit() -> Any:
    """The audit log, newest first."""
    page = _page()
    rows = db.session.scalars(
        select(AuditEntry).order_by(AuditEntry.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    ).all()
    actors = {u.id: u for u in db.session.scalars(
        select(User).where(User.id.in_({r.actor_id for r in rows if r.actor_id}))
    )}
    from academy.audit.labels import describe
    from academy.i18n import current_locale

    return render_template("admin/audit.html", entries=describe(db.session, rows[:PAGE_SIZE], current_locale()),
                           actors=actors, page=page, has_next=len(rows) > PAGE_SIZE)
