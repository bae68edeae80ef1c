"""Certificate pages: the public verification page and key set, the holder's downloads, the admin's list.

Verification needs no account: an employer scans the QR code or types the code.  It shows only
what the certificate states and whether it is valid; an unknown or malformed code is a 404 with
a message.  Downloads are for the holder and admins; revocation is an admin's, with a reason.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from academy.certificates import services
from academy.certificates.credential import issuer_profile
from academy.certificates.keys import public_jwks
from academy.certificates.models import Certificate, completed_on
from academy.errors import AcademyError, Gone
from academy.extensions import db, limiter
from academy.permissions import can_see_certificate_files
from academy.web.access import admin_required, login_required, public

bp = Blueprint("certificates", __name__)


@bp.route("/verify")
@public
def verify_form() -> Any:
    """A form to type a verification code; a typed code goes to its page (which is rate-limited)."""
    typed = (request.args.get("code") or "").strip()
    if typed:
        code = services.normalise_code(typed)
        if code is not None:
            return redirect(url_for("certificates.verify", code=code))
        flash(_("A verification code has 12 letters and digits, like ABCD-2345-WXYZ."), "danger")
    return render_template("certificates/verify_form.html", typed=typed)


@bp.route("/verify/<code>")
@public
@limiter.limit("60 per minute")
def verify(code: str) -> Any:
    """What the certificate with ``code`` states, and whether it is valid or revoked."""
    certificate = services.get_by_code(db.session, code)
    if certificate.code != code:
        return redirect(url_for("certificates.verify", code=certificate.code))
    return render_template("certificates/verify.html", certificate=certificate,
                           completed_on=completed_on(certificate.completed_at),
                           issued_on=completed_on(certificate.issued_at))


@bp.route("/certificates/jwks.json")
@public
def jwks() -> Any:
    """The public keys that verify the academy's credentials (named by the JWS ``kid``)."""
    response = jsonify(public_jwks(services.Issuer.from_app().data_dir))
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response


@bp.route("/certificates/issuer")
@public
def issuer() -> Any:
    """The issuer's Open Badges profile (the credentials' ``issuer.id``)."""
    return jsonify(issuer_profile(services.Issuer.from_app().base_url))


def _own_certificate(code: str) -> Certificate:
    certificate = services.find(db.session, code)
    if certificate is None or not can_see_certificate_files(current_user, certificate.user_id):
        raise services.unknown_code()
    if not certificate.valid:
        raise Gone(_("This certificate was revoked and can no longer be downloaded."))
    return certificate


@bp.route("/certificates/<code>/pdf")
@login_required
def pdf(code: str) -> Any:
    """The certificate as a PDF, for its holder (and admins)."""
    certificate = _own_certificate(code)
    response = Response(services.pdf_of(certificate), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="certificate-{certificate.code}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/certificates/<code>/credential")
@login_required
def credential(code: str) -> Any:
    """The Open Badges 3.0 credential as a JWT file, for its holder (and admins)."""
    certificate = _own_certificate(code)
    response = Response(certificate.credential + "\n", mimetype="application/vc+jwt")
    response.headers["Content-Disposition"] = f'attachment; filename="certificate-{certificate.code}.jwt"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/admin/certificates")
@admin_required
def admin_list() -> Any:
    """Every certificate, searchable, with the revoke form."""
    search = (request.args.get("q") or "").strip()[:100]
    status = request.args.get("status") or ""
    if status not in ("", "valid", "revoked"):
        status = ""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rows, total = services.listing(db.session, search=search, status=status, page=page)
    return render_template("certificates/admin_list.html", certificates=rows, total=total, q=search,
                           status=status, page=page, has_next=page * services.PER_PAGE < total,
                           reason_text=services.reason_text)


@bp.route("/admin/certificates/<code>/revoke", methods=["POST"])
@admin_required
def revoke(code: str) -> Any:
    """Revoke a certificate; the reason is required."""
    certificate = services.get_by_code(db.session, code)
    try:
        services.revoke(db.session, certificate, actor=current_user, reason=request.form.get("reason", ""))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("Certificate %(code)s was revoked; %(name)s was told by e-mail.", code=certificate.code,
                name=certificate.holder_name), "success")
    return redirect(url_for("certificates.admin_list", q=request.form.get("q", "")))
