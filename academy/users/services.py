"""Account operations: registration, sign-in, roles, password resets.

Services take plain values and an explicit actor, flush, and leave the commit to the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from flask_babel import force_locale
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.db import utcnow
from academy.errors import AcademyError, Conflict, NotFound, ValidationFailed
from academy.mail.services import queue_mail
from academy.users import reference
from academy.users.models import Company, Role, User
from academy.users.passwords import (
    check_password_policy,
    dummy_hash,
    has_usable_password,
    hash_password,
    needs_rehash,
    verify_password,
)

CONSENT_VERSION = "2026-01"


def normalize_email(email: str) -> str:
    """Trim and lower-case an email address (addresses are compared case-insensitively)."""
    return email.strip().lower()


def find_user_by_email(session: Session, email: str) -> User | None:
    """The user with this email, or None."""
    return session.scalar(select(User).where(func.lower(User.email) == normalize_email(email)))


def get_or_create_company(session: Session, name: str, business_number: str) -> Company:
    """The company with this registration number, created when new.

    Raises ValidationFailed (field ``business_number``) for a malformed number.
    """
    try:
        number = reference.normalize_business_number(business_number)
    except ValueError:
        raise ValidationFailed(
            _("Enter a valid business registration number (XXX-XX-XXXXX)."), field="business_number"
        ) from None
    company = session.scalar(select(Company).where(Company.business_number == number))
    if company is None:
        clean_name = name.strip()
        if not clean_name:
            raise ValidationFailed(_("Enter the company name."), field="company_name")
        company = Company(name=clean_name[:200], business_number=number)
        session.add(company)
        session.flush()
    return company


@dataclass
class Registration:
    """What a person fills in to create an account."""

    name: str
    email: str
    password: str
    company_name: str
    business_number: str
    region: str
    industry: str
    job_role: str
    consent: bool
    locale: str | None = None


def _check_codes(region: str | None, industry: str | None, job_role: str | None) -> None:
    if region is not None and region not in reference.REGIONS:
        raise ValidationFailed(_("Choose a region from the list."), field="region")
    if industry is not None and industry not in reference.INDUSTRIES:
        raise ValidationFailed(_("Choose an industry from the list."), field="industry")
    if job_role is not None and job_role not in reference.JOB_ROLES:
        raise ValidationFailed(_("Choose a job role from the list."), field="job_role")


class RegistrationRejected(ValidationFailed):
    """Everything wrong with a registration at once: ``problems`` maps each field to its messages.

    Its message (and ``field``) are the first problem's, for callers that show only one.
    """

    def __init__(self, problems: dict[str, list[str]]) -> None:
        field, messages = next(iter(problems.items()))
        super().__init__(messages[0], field=field)
        self.problems = problems


def registration_problems(session: Session, data: Registration) -> dict[str, list[str]]:
    """Every rule a registration breaks, by field (empty when it can be saved).

    Checks them all rather than stopping at the first, so that the form shows every error
    in one round: consent, name, the region/industry/job codes, the password policy, an
    email already registered, the business number's check digit and a new company's name.
    """
    problems: dict[str, list[str]] = {}

    def add(exc: AcademyError) -> None:
        problems.setdefault(exc.field or "", []).append(str(exc))

    if not data.consent:
        add(ValidationFailed(_("You must agree to the collection and use of personal data to register."),
                             field="consent"))
    if not data.name.strip():
        add(ValidationFailed(_("Enter your name."), field="name"))
    for check in (
        lambda: _check_codes(data.region, None, None),
        lambda: _check_codes(None, data.industry, None),
        lambda: _check_codes(None, None, data.job_role),
    ):
        try:
            check()
        except ValidationFailed as exc:
            add(exc)
    if data.password:
        try:
            check_password_policy(data.password, email=normalize_email(data.email))
        except ValidationFailed as exc:
            add(exc)
    email = normalize_email(data.email)
    if email and find_user_by_email(session, email) is not None:
        add(Conflict(_("An account with this email already exists."), field="email"))
    if data.business_number.strip():
        try:
            number = reference.normalize_business_number(data.business_number)
        except ValueError:
            add(ValidationFailed(_("Enter a valid business registration number (XXX-XX-XXXXX)."),
                                 field="business_number"))
        else:
            known = session.scalar(select(Company.id).where(Company.business_number == number))
            if known is None and not data.company_name.strip():
                add(ValidationFailed(_("Enter the company name."), field="company_name"))
    return problems


def register_learner(session: Session, data: Registration) -> User:
    """Create a learner account from self-registration, recording consent and its time.

    Raises RegistrationRejected (a ValidationFailed listing every problem, see
    :func:`registration_problems`) for missing consent, a weak password, unknown codes, a
    malformed business number or an email already registered.
    """
    problems = registration_problems(session, data)
    if not data.password:
        problems.setdefault("password", []).append(_("Choose a password."))
    if not data.business_number.strip():
        problems.setdefault("business_number", []).append(_("Enter the business registration number."))
    if problems:
        raise RegistrationRejected(problems)
    email = normalize_email(data.email)
    company = get_or_create_company(session, data.company_name, data.business_number)
    user = User(
        email=email,
        name=data.name.strip()[:100],
        password_hash=hash_password(data.password),
        role=Role.learner,
        company=company,
        region=data.region,
        industry=data.industry,
        job_role=data.job_role,
        locale=data.locale,
        consent_at=utcnow(),
        consent_version=CONSENT_VERSION,
    )
    session.add(user)
    session.flush()
    record(session, "user.register", actor=user, target_type="user", target_id=user.id)
    return user


def create_user(
    session: Session,
    email: str,
    password: str,
    role: Role,
    *,
    name: str | None = None,
    actor: User | None = None,
) -> User:
    """Create an account with a given role (the ``academy create-user`` command and admins).

    ``actor`` is the admin who creates it, ``None`` for the command line.

    Raises ValidationFailed for a weak password and Conflict for a taken email.
    """
    email = normalize_email(email)
    if "@" not in email:
        raise ValidationFailed(_("Enter a valid email address."), field="email")
    check_password_policy(password, email=email)
    if find_user_by_email(session, email) is not None:
        raise Conflict(_("An account with this email already exists."), field="email")
    user = User(
        email=email,
        name=(name or email.split("@")[0])[:100],
        password_hash=hash_password(password),
        role=role,
    )
    session.add(user)
    session.flush()
    record(session, "user.create", actor=actor, target_type="user", target_id=user.id, role=role.value)
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with these credentials, or None (same work either way).

    Upgrades the stored hash when its parameters are outdated.
    """
    user = find_user_by_email(session, email)
    if user is None or not user.active:
        verify_password(dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def set_role(session: Session, user: User, role: Role, *, actor: User) -> None:
    """Change a user's role (admins only; checked by the caller), with an audit entry."""
    if user.id == actor.id and role is not Role.admin:
        raise ValidationFailed(_("You cannot remove your own administrator role."), field="role")
    old = user.role
    user.role = role
    record(session, "user.set_role", actor=actor, target_type="user", target_id=user.id,
           old=old.value, new=role.value)


def set_active(session: Session, user: User, active: bool, *, actor: User) -> None:
    """Deactivate or reactivate an account, with an audit entry."""
    if user.id == actor.id and not active:
        raise ValidationFailed(_("You cannot deactivate your own account."))
    user.active = active
    record(session, "user.set_active", actor=actor, target_type="user", target_id=user.id, active=active)


def record_consent(session: Session, user: User) -> None:
    """Record that the user agreed to the current personal-data notice, and when."""
    user.consent_at = utcnow()
    user.consent_version = CONSENT_VERSION
    record(session, "user.consent", actor=user, target_type="user", target_id=user.id, version=CONSENT_VERSION)


def set_locale(user: User, locale: str) -> None:
    """Remember the user's language."""
    user.locale = locale


# --- password reset -------------------------------------------------------------

_RESET_SALT = "academy.password-reset"


def _password_fingerprint(user: User) -> str:
    # Changes whenever the password hash changes, so a used link stops working.
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def make_reset_token(user: User, secret_key: str) -> str:
    """A signed token for resetting ``user``'s password; valid until the password changes."""
    serializer = URLSafeTimedSerializer(secret_key, salt=_RESET_SALT)
    return serializer.dumps({"uid": user.id, "fp": _password_fingerprint(user)})


def request_password_reset(
    session: Session, email: str, *, secret_key: str, reset_url_for: Callable[[str], str], locale: str = "ko"
) -> bool:
    """Queue a reset link for the account with this email, if there is one.

    ``reset_url_for`` turns a token into an absolute URL. An imported account that has not
    chosen a password yet gets a new invitation instead (:func:`send_invitation`). Returns
    whether a message was queued; callers show the same answer either way, so accounts
    cannot be probed.
    """
    user = find_user_by_email(session, email)
    if user is None or not user.active:
        return False
    if not has_usable_password(user.password_hash):
        # An imported account that never chose a password: a fresh invitation (7 days, saying who
        # registered them) serves it better than a reset; the same page opens either link.
        send_invitation(session, user, secret_key=secret_key, invite_url_for=reset_url_for, actor=None)
        return True
    token = make_reset_token(user, secret_key)
    url = reset_url_for(token)
    subject = _("Reset your AI Saemaul Academy password")
    body = _(
        "Hello %(name)s,\n\nOpen this link within one hour to choose a new password:\n%(url)s\n\n"
        "The link works once. If you did not ask for it, ignore this message.",
        name=user.name,
        url=url,
    )
    queue_mail(session, user.email, subject, body)
    record(session, "user.password_reset_requested", actor=None, target_type="user", target_id=user.id)
    return True


def user_for_reset_token(session: Session, token: str, *, secret_key: str, max_age: int) -> User:
    """The user a reset token is for.

    Raises ValidationFailed when the token is expired, forged or already used.
    """
    serializer = URLSafeTimedSerializer(secret_key, salt=_RESET_SALT)
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired:
        raise ValidationFailed(_("This reset link has expired. Ask for a new one.")) from None
    except BadSignature:
        raise ValidationFailed(_("This reset link is not valid. Ask for a new one.")) from None
    user = session.get(User, payload.get("uid")) if isinstance(payload, dict) else None
    if user is None or not user.active or payload.get("fp") != _password_fingerprint(user):
        raise ValidationFailed(_("This reset link has already been used. Ask for a new one."))
    return user


# --- invitations (accounts an admin imported) ------------------------------------

_INVITATION_SALT = "academy.invitation"
#: How long an invitation's set-password link works, in seconds (7 days: people read their
#: company mail at work, not within the hour a reset link allows).
INVITATION_MAX_AGE = 7 * 24 * 3600


def make_invitation_token(user: User, secret_key: str) -> str:
    """A signed token inviting ``user`` to choose a password; valid until the password is set."""
    serializer = URLSafeTimedSerializer(secret_key, salt=_INVITATION_SALT)
    return serializer.dumps({"uid": user.id, "fp": _password_fingerprint(user)})


def send_invitation(
    session: Session, user: User, *, secret_key: str, invite_url_for: Callable[[str], str], actor: User | None
) -> None:
    """Queue the welcome mail of an account created for ``user`` by their company (an admin's import).

    It says who registered them (the company) and links to a page where they choose their
    password, valid for ``INVITATION_MAX_AGE`` and once.  Written in the user's language:
    their account's, else Korean.  ``invite_url_for`` turns a token into an absolute URL.
    """
    url = invite_url_for(make_invitation_token(user, secret_key))
    with force_locale(user.locale or "ko"):
        company = user.company.name if user.company is not None else _("The company you work for")
        subject = _("%(company)s registered you for the AI Saemaul Academy", company=company)
        body = _(
            "Hello %(name)s,\n\n%(company)s has registered you for the AI Saemaul Academy, where you can take "
            "courses in AI for manufacturing. Your account uses this email address.\n\n"
            "To start, open this link and choose your password:\n%(url)s\n\n"
            "The link works for 7 days and once. If it has expired, open it anyway: the page lets you "
            "ask for a new one.",
            name=user.name, company=company, url=url,
        )
    queue_mail(session, user.email, subject, body)
    record(session, "user.invite", actor=actor, target_type="user", target_id=user.id)


@dataclass
class PasswordLink:
    """Whom a set-password link is for, and whether it is an invitation (else a reset)."""

    user: User
    invitation: bool


def user_for_password_link(session: Session, token: str, *, secret_key: str, reset_max_age: int) -> PasswordLink:
    """Read a set-password link: an invitation (7 days) or a password reset (``reset_max_age``).

    Raises ValidationFailed, saying which, when the link has expired, was already used or is
    not one of ours.
    """
    serializer = URLSafeTimedSerializer(secret_key, salt=_INVITATION_SALT)
    try:
        payload = serializer.loads(token, max_age=INVITATION_MAX_AGE)
    except SignatureExpired:
        raise ValidationFailed(
            _("This invitation link has expired: it worked for 7 days. Ask for a new link below and "
              "we will send it to your email.")
        ) from None
    except BadSignature:
        return PasswordLink(
            user_for_reset_token(session, token, secret_key=secret_key, max_age=reset_max_age), invitation=False
        )
    user = session.get(User, payload.get("uid")) if isinstance(payload, dict) else None
    if user is None or not user.active:
        raise ValidationFailed(_("This invitation link is not valid. Ask for a new link below."))
    if payload.get("fp") != _password_fingerprint(user):
        raise ValidationFailed(
            _("This invitation link has already been used: your password is set. Sign in, or ask for a new "
              "link below if you forgot it.")
        )
    return PasswordLink(user, invitation=True)


def set_password_from_link(
    session: Session, token: str, new_password: str, *, secret_key: str, reset_max_age: int
) -> PasswordLink:
    """Set a password through an invitation or reset link; the link cannot be used again.

    Raises ValidationFailed for a bad link or a weak password.
    """
    link = user_for_password_link(session, token, secret_key=secret_key, reset_max_age=reset_max_age)
    if not link.invitation:
        reset_password(session, token, new_password, secret_key=secret_key, max_age=reset_max_age)
        return link
    check_password_policy(new_password, email=link.user.email)
    link.user.password_hash = hash_password(new_password)
    link.user.last_login_at = utcnow()
    record(session, "user.password_change", actor=link.user, target_type="user", target_id=link.user.id,
           via="invitation")
    return link


def reset_password(session: Session, token: str, new_password: str, *, secret_key: str, max_age: int) -> User:
    """Set a new password through a reset token; the token cannot be used again.

    Raises ValidationFailed for a bad token or a weak password.
    """
    user = user_for_reset_token(session, token, secret_key=secret_key, max_age=max_age)
    check_password_policy(new_password, email=user.email)
    user.password_hash = hash_password(new_password)
    record(session, "user.password_reset", actor=user, target_type="user", target_id=user.id)
    return user


def change_password(session: Session, user: User, current: str, new_password: str) -> None:
    """Change a signed-in user's password after checking the current one."""
    if not verify_password(user.password_hash, current):
        raise ValidationFailed(_("The current password is not correct."), field="current_password")
    check_password_policy(new_password, email=user.email)
    user.password_hash = hash_password(new_password)
    record(session, "user.password_change", actor=user, target_type="user", target_id=user.id)


def get_user(session: Session, user_id: int) -> User:
    """The user with this id. Raises NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(_("No such user."))
    return user
