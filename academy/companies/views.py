"""Company pages: the contact's report of their employees, an employee's request, the admin's decisions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from academy.catalog.models import Track
from academy.companies import services
from academy.companies.models import ContactStatus
from academy.errors import AcademyError, NotFound
from academy.extensions import db
from academy.i18n import current_locale
from academy.stats import export
from academy.users import reference
from academy.users.models import Company, User
from academy.web.access import admin_required, company_contact_required, contact_company, login_required

bp = Blueprint("companies", __name__)
PER_PAGE = 50


def _report_args() -> tuple[str, int | None, int]:
    search = (request.args.get("q") or "").strip()[:100]
    track = request.args.get("track", type=int)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    return search, track, page


def _status_text(status: str) -> str:
    from academy.web.labels import enrollment_status_label

    return str(enrollment_status_label(status))


@bp.route("/company")
@company_contact_required
def report() -> Any:
    """The contact's company: each employee's enrollments, progress, lab hours, completions and certificates."""
    company = contact_company()
    search, track, page = _report_args()
    lines, total = services.employees_report(db.session, company.id, locale=current_locale(), search=search,
                                             track_id=track, page=page, per_page=PER_PAGE)
    tracks = db.session.scalars(select(Track).where(Track.active).order_by(Track.position)).all()
    return render_template("companies/report.html", company=company, lines=lines, total=total, q=search,
                           track=track, page=page, has_next=page * PER_PAGE < total, tracks=tracks,
                           job_roles=reference.JOB_ROLES, status_text=_status_text)


@bp.route("/company/export.<any(csv, xlsx):fmt>")
@company_contact_required
def export_report(fmt: str) -> Any:
    """The same report as CSV or XLSX: one row per employee and enrollment (every page)."""
    company = contact_company()
    search, track, _page = _report_args()
    lines, _total = services.employees_report(db.session, company.id, locale=current_locale(), search=search,
                                              track_id=track, page=1, per_page=100_000)
    rows = []
    for line in lines:
        person = [line.user.name, line.user.email, str(reference.JOB_ROLES.get(line.user.job_role or "", ""))]
        codes = ", ".join(f"{c.code} ({_('valid') if c.valid else _('revoked')})" for c in line.certificates)
        learning = [[e.track, e.cohort, _status_text(e.status), e.passed, e.assignments, round(e.lab_hours, 1),
                     ", ".join(e.courses_completed),
                     e.track_completed_on.date().isoformat() if e.track_completed_on else ""]
                    for e in line.enrollments] or [[""] * 8]  # an employee not enrolled yet: one row, blank
        rows += [[*person, *cells, codes] for cells in learning]
    table = export.Table("employees", company.name, [
        _("Name"), _("Email"), _("Job role"), _("Track"), _("Cohort"), _("Status"), _("Assignments passed"),
        _("Assignments"), _("Lab hours"), _("Courses completed"), _("Track completed on"), _("Certificates")], rows)
    data, mimetype = export.encode(table, fmt)
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="academy-company-employees.{fmt}"'
    return response


@bp.route("/company/request", methods=["GET", "POST"])
@login_required
def request_access() -> Any:
    """An employee asks to follow their company's employees; an admin decides."""
    current = services.live_contact(db.session, current_user.id)
    if request.method == "POST":
        try:
            services.request_access(db.session, current_user, note=request.form.get("note"))
        except AcademyError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Your request was sent. An administrator will decide, and you will be told by e-mail."),
                  "success")
        return redirect(url_for("companies.request_access"))
    return render_template("companies/request.html", current=current, company=current_user.company)


@bp.route("/admin/company-contacts")
@admin_required
def admin_contacts() -> Any:
    """Requests to decide and contacts in force; appointing a contact."""
    companies = db.session.scalars(select(Company).order_by(Company.name)).all()
    return render_template("companies/admin_contacts.html", contacts=services.contacts(db.session),
                           companies=companies, ContactStatus=ContactStatus)


@bp.route("/admin/company-contacts/appoint", methods=["POST"])
@admin_required
def appoint() -> Any:
    """Make an account the contact of a company."""
    email = (request.form.get("email") or "").strip().lower()
    user = db.session.scalar(select(User).where(User.email == email)) if email else None
    company = db.session.get(Company, request.form.get("company_id", type=int) or 0)
    try:
        if user is None:
            raise NotFound(_("No account has this e-mail address."))
        if company is None:
            raise NotFound(_("Choose a company."))
        services.appoint(db.session, company, user, actor=current_user, note=request.form.get("note"))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("%(name)s is now the contact of %(company)s.", name=user.name, company=company.name), "success")
    return redirect(url_for("companies.admin_contacts"))


@bp.route("/admin/company-contacts/<int:contact_id>/<any(approve, reject, revoke):action>", methods=["POST"])
@admin_required
def decide(contact_id: int, action: str) -> Any:
    """Approve or decline a request, or end a contact's access."""
    try:
        contact = services.get_contact(db.session, contact_id)
        note = request.form.get("note")
        if action == "revoke":
            services.revoke(db.session, contact, actor=current_user, note=note)
        else:
            services.decide(db.session, contact, approve=action == "approve", actor=current_user, note=note)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("Saved."), "success")
    return redirect(url_for("companies.admin_contacts"))
