"""Password hashing with Argon2id and the password policy."""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import gettext as _

from academy.errors import ValidationFailed

_hasher = PasswordHasher()

MIN_LENGTH = 10
MAX_LENGTH = 256

# Marks a password hash that no password matches (an imported account that has not chosen one).
_UNUSABLE_PREFIX = "!"


def hash_password(password: str) -> str:
    """Hash a password with Argon2id (random salt, parameters in the hash)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; never raises for a wrong or malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def unusable_password_hash() -> str:
    """A stored "hash" that no password verifies against: the account has no password yet.

    Random, so that it still changes when a password is set (reset and invitation links
    carry a fingerprint of the hash), and cheap: imports create thousands of accounts.
    """
    return _UNUSABLE_PREFIX + secrets.token_hex(24)


def has_usable_password(password_hash: str) -> bool:
    """False for an account that never chose a password (see :func:`unusable_password_hash`)."""
    return not password_hash.startswith(_UNUSABLE_PREFIX)


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raise ValidationFailed (field ``password``) when the password is too weak."""
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(
            _("Use at least %(n)d characters for your password.", n=MIN_LENGTH), field="password"
        )
    if len(password) > MAX_LENGTH:
        raise ValidationFailed(_("The password is too long."), field="password")
    if password.isdigit() or password.isalpha():
        raise ValidationFailed(_("Mix letters with numbers or symbols in your password."), field="password")
    if email and email.split("@")[0].lower() in password.lower() and len(email.split("@")[0]) >= 4:
        raise ValidationFailed(_("Do not use your email address in your password."), field="password")


@cache
def dummy_hash() -> str:
    """A hash to verify against for unknown accounts, so both paths take the same time."""
    return _hasher.hash("timing-equaliser-not-a-password")
