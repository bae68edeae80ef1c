"""Sign-in, registration, password reset and the profile page."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from academy.errors import AcademyError
from academy.extensions import db, limiter
from academy.i18n import current_locale
from academy.users import services, tokens
from academy.users.forms import (
    ChangePasswordForm,
    ConsentForm,
    ForgotPasswordForm,
    LoginForm,
    RegistrationForm,
    ResetPasswordForm,
    TokenForm,
)
from academy.users.models import User
from academy.web.access import anonymous_only, login_required, public
from academy.web.errors import render_error
from academy.web.forms import apply_error
from academy.web.security import safe_next_path

bp = Blueprint("auth", __name__)


def _login_limit() -> str:
    return current_app.config["ACADEMY_SETTINGS"].login_rate_limit


def _login_key() -> str:
    from flask_limiter.util import get_remote_address

    email = (request.form.get("email") or "").strip().lower()
    return f"{get_remote_address()}|{email}"


def _settings() -> Any:
    return current_app.config["ACADEMY_SETTINGS"]


# Endpoints a signed-in user without recorded consent may still reach.
_CONSENT_EXEMPT = {"auth.consent", "auth.logout", "web.set_language", "web.healthz", "static"}


@bp.before_app_request
def require_consent() -> Any:
    """Accounts created by an import have not consented yet: ask before anything else."""
    if (
        current_user.is_authenticated
        and current_user.consent_at is None
        and request.endpoint not in _CONSENT_EXEMPT
        and not request.path.startswith("/api/")
    ):
        return redirect(url_for("auth.consent", next=request.full_path if request.query_string else request.path))
    return None


@bp.route("/consent", methods=["GET", "POST"])
@login_required
def consent() -> Any:
    """Record consent to the collection and use of personal data (imported accounts)."""
    form = ConsentForm()
    if current_user.consent_at is not None:
        return redirect(url_for("dashboard.index"))
    if form.validate_on_submit():
        services.record_consent(db.session, current_user)
        db.session.commit()
        return redirect(safe_next_path(request.args.get("next")) or landing(current_user))
    return render_template("auth/consent.html", form=form)


def landing(user: User) -> str:
    """Where ``user`` lands after signing in: admins on the statistics, instructors on their teaching,
    learners on their learning."""
    if user.is_admin:
        return url_for("admin.home")
    return url_for("teaching.home") if user.is_instructor else url_for("dashboard.index")


def _signed_in(user: User, remember: bool = False) -> None:
    """Sign ``user`` in and note when: OpenID Connect's ``max_age`` and ``auth_time`` need it."""
    from academy.oidc.server import AUTH_TIME_KEY

    login_user(user, remember=remember)
    session[AUTH_TIME_KEY] = int(time.time())


@bp.route("/login", methods=["GET", "POST"])
@anonymous_only
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_key,
               error_message="too many sign-in attempts")
@limiter.limit("60 per minute", methods=["POST"])
def login() -> Any:
    """Sign in with email and password."""
    form = LoginForm()
    next_path = safe_next_path(request.args.get("next"))
    if form.validate_on_submit():
        user = services.authenticate(db.session, form.email.data or "", form.password.data or "")
        if user is None:
            db.session.commit()
            flash(_("The email or password is not correct."), "danger")
        else:
            lang = session.get("lang")
            session.clear()  # no session fixation: a fresh session on sign-in
            if lang and not user.locale:
                user.locale = lang
            _signed_in(user, remember=bool(form.remember.data))
            db.session.commit()
            return redirect(next_path or landing(user))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    """Sign out (POST only, so a link on another site cannot sign anyone out).

    Signing out of the portal signs out of the lab too: every token the hub holds for this person
    is revoked (the hub re-checks within a minute), their hub API tokens are deleted, and the browser
    passes through the hub's logout, which sends it back here.
    """
    from academy.labs.launch import sign_out_of_hub

    hub_logout = sign_out_of_hub(db.session, current_app.config["ACADEMY_SETTINGS"],
                                 current_user._get_current_object())
    db.session.commit()
    logout_user()
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(hub_logout or url_for("web.index"))


@bp.route("/register", methods=["GET", "POST"])
@anonymous_only
@limiter.limit("20 per hour", methods=["POST"])
def register() -> Any:
    """Self-registration of a learner.

    Every error shows at once: the form's own checks and the account rules (password policy,
    business number check digit, email already registered) are all run on each POST.  What was
    typed stays in the form, except the passwords.
    """
    form = RegistrationForm()
    if form.is_submitted():
        form_ok = form.validate()
        data = services.Registration(
            name=form.name.data or "",
            email=form.email.data or "",
            password=form.password.data or "",
            company_name=form.company_name.data or "",
            business_number=form.business_number.data or "",
            region=form.region.data or "",
            industry=form.industry.data or "",
            job_role=form.job_role.data or "",
            consent=bool(form.consent.data),
            locale=current_locale(),
        )
        problems = services.registration_problems(db.session, data)
        for name, messages in problems.items():
            field = getattr(form, name, None)
            if field is not None and not field.errors:  # one message per field: the form's comes first
                field.errors = list(messages)
        if form_ok and not problems:
            try:
                user = services.register_learner(db.session, data)
            except AcademyError as exc:  # a parallel registration of the same email
                db.session.rollback()
                apply_error(form, exc)
            else:
                session.clear()
                _signed_in(user)
                db.session.commit()
                flash(_("Welcome! Your account is ready."), "success")
                return redirect(url_for("catalog.index"))
    return render_template("auth/register.html", form=form)


@bp.errorhandler(CSRFError)
def form_expired(exc: CSRFError) -> Any:
    """A form whose CSRF token expired (a long pause, a restarted browser): registration keeps what
    was typed (but the passwords) and asks to send it again; other forms get the usual error page."""
    message = _("The form expired or was sent from elsewhere. Please try again.")
    if request.endpoint != "auth.register" or current_user.is_authenticated:
        return render_error(400, message, "csrf")
    form = RegistrationForm()
    flash(_("The form expired while it was open. Check what you entered, type the passwords again "
            "and send it once more."), "warning")
    return render_template("auth/register.html", form=form), 400


@bp.route("/password/forgot", methods=["GET", "POST"])
@anonymous_only
@limiter.limit("5 per minute", methods=["POST"])
def forgot_password() -> Any:
    """Ask for a reset link; the answer is the same whether or not the account exists."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        services.request_password_reset(
            db.session,
            form.email.data or "",
            secret_key=current_app.config["SECRET_KEY"],
            reset_url_for=lambda token: url_for("auth.reset_password", token=token, _external=True),
            locale=current_locale(),
        )
        db.session.commit()  # sends the mail's delivery job
        flash(_("If an account exists for that email, a reset link is on its way."), "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@public
def reset_password(token: str) -> Any:
    """Choose a password through a signed, expiring, single-use link: a reset (then sign in again)
    or the invitation of an imported account (then signed in, on to the consent step)."""
    key = current_app.config["SECRET_KEY"]
    max_age = _settings().password_reset_max_age
    try:
        link = services.user_for_password_link(db.session, token, secret_key=key, reset_max_age=max_age)
    except AcademyError as exc:
        return render_template("auth/reset_invalid.html", message=str(exc)), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            services.set_password_from_link(db.session, token, form.password.data or "", secret_key=key,
                                            reset_max_age=max_age)
        except AcademyError as exc:
            db.session.rollback()
            apply_error(form, exc)
        else:
            if link.invitation:
                lang = session.get("lang")
                session.clear()  # whoever was signed in on this browser, it is the invited person now
                if lang and not link.user.locale:
                    link.user.locale = lang
                _signed_in(link.user)
                db.session.commit()
                flash(_("Your password is set. Welcome to the AI Saemaul Academy!"), "success")
                return redirect(url_for("auth.consent") if link.user.consent_at is None
                                else landing(link.user))
            db.session.commit()
            if current_user.is_authenticated:
                logout_user()
                session.clear()
            flash(_("Your password is changed. Sign in with the new one."), "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form, invitation=link.invitation,
                           company=link.user.company.name if link.user.company else None)


def _render_profile(password_form: ChangePasswordForm | None = None, new_token: str | None = None,
                    status: int = 200) -> Any:
    return render_template(
        "auth/profile.html",
        password_form=password_form or ChangePasswordForm(prefix="pw"),
        token_form=TokenForm(prefix="tok", formdata=None, scopes=list(tokens.DEFAULT_SCOPES)),
        tokens=tokens.list_tokens(db.session, current_user),
        new_token=new_token,
        scope_descriptions=tokens.SCOPES,
    ), status


@bp.route("/profile", methods=["GET"])
@login_required
def profile() -> Any:
    """The user's profile: language, password and API tokens."""
    return _render_profile()


@bp.route("/profile/password", methods=["POST"])
@login_required
def change_password() -> Any:
    """Change the password after confirming the current one."""
    form = ChangePasswordForm(prefix="pw")
    if form.validate_on_submit():
        try:
            services.change_password(db.session, current_user, form.current_password.data or "",
                                     form.password.data or "")
        except AcademyError as exc:
            db.session.rollback()
            apply_error(form, exc)
        else:
            db.session.commit()
            flash(_("Your password is changed."), "success")
            return redirect(url_for("auth.profile"))
    return _render_profile(password_form=form, status=400)


@bp.route("/profile/tokens", methods=["POST"])
@login_required
def create_token() -> Any:
    """Create a personal access token and show it once, in this response.

    The token is rendered straight into the answer to the POST (never kept in the
    session cookie, which is signed but readable), so it exists only on this page.
    """
    form = TokenForm(prefix="tok")
    if form.validate_on_submit():
        try:
            _row, plain = tokens.create_token(db.session, current_user, form.name.data or "", form.scopes.data)
        except AcademyError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            db.session.commit()
            flash(_("Copy your new token now: it will not be shown again."), "warning")
            return _render_profile(new_token=plain, status=201)
    else:
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "danger")
    return redirect(url_for("auth.profile"))


@bp.route("/profile/tokens/<id:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int) -> Any:
    """Revoke one of your tokens."""
    tokens.revoke_token(db.session, token_id, actor=current_user)
    db.session.commit()
    flash(_("The token is revoked."), "info")
    return redirect(url_for("auth.profile"))
