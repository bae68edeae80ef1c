"""Account operations: registration, sign-in, roles, password resets.

Services take plain values and an explicit actor, flush, and leave the commit to the caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.db import utcnow
from academy.errors import Conflict, NotFound, ValidationFailed
from academy.mail.services import queue_mail
from academy.users import reference
from academy.users.models import Company, Role, User
from academy.users.passwords import (
    check_password_policy,
    dummy_hash,
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


def register_learner(session: Session, data: Registration) -> User:
    """Create a learner account from self-registration, recording consent and its time.

    Raises ValidationFailed for missing consent, a weak password or unknown codes, and
    Conflict when the email is already registered.
    """
    if not data.consent:
        raise ValidationFailed(
            _("You must agree to the collection and use of personal data to register."), field="consent"
        )
    email = normalize_email(data.email)
    name = data.name.strip()
    if not name:
        raise ValidationFailed(_("Enter your name."), field="name")
    _check_codes(data.region, data.industry, data.job_role)
    check_password_policy(data.password, email=email)
    if find_user_by_email(session, email) is not None:
        raise Conflict(_("An account with this email already exists."), field="email")
    company = get_or_create_company(session, data.company_name, data.business_number)
    user = User(
        email=email,
        name=name[:100],
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
    session: Session, email: str, *, secret_key: str, reset_url_for: object, locale: str = "ko"
) -> bool:
    """Queue a reset link for the account with this email, if there is one.

    ``reset_url_for`` turns a token into an absolute URL. Returns whether a message
    was queued; callers show the same answer either way, so accounts cannot be probed.
    """
    user = find_user_by_email(session, email)
    if user is None or not user.active:
        return False
    token = make_reset_token(user, secret_key)
    url = reset_url_for(token)  # type: ignore[operator]
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
