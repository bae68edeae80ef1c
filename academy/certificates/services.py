"""Issuing, finding and revoking certificates.

A certificate is issued for every completion in force (see :mod:`academy.completion.services`,
which calls :func:`issue` when it records one and :func:`revoke_for_completion` when it
withdraws one).  Issuing freezes what the certificate states and signs its Open Badges 3.0
credential with the current certificate key; it is idempotent per completion.  Revoking needs
a reason, is audited, and tells the learner.  Nothing here looks at the request: the base URL
and the data directory come from the application's settings or from the caller.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from academy.audit.services import record
from academy.catalog.models import Course, Track
from academy.certificates import credential as vc
from academy.certificates.keys import current_key
from academy.certificates.models import Certificate, completed_on
from academy.certificates.pdf import PdfText, render
from academy.completion.models import Completion
from academy.db import utcnow
from academy.errors import Conflict, NotFound, ValidationFailed
from academy.mail.services import queue_mail
from academy.users.models import User

# Crockford's base32: no I, L, O or U, so a code read aloud or typed from paper is not misread.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12  # 60 random bits: not guessable
_TYPED = str.maketrans({"O": "0", "I": "1", "L": "1"})
REASON_MAX = 500
PER_PAGE = 50

#: Why the system revoked a certificate (``Certificate.revoked_reason`` when no admin did).
SYSTEM_REASONS = ("completion_withdrawn",)


@dataclass(frozen=True)
class Issuer:
    """Where the portal is reached (printed on certificates) and where its keys are kept."""

    base_url: str
    data_dir: Path

    @classmethod
    def from_app(cls) -> Issuer:
        """The running application's issuer."""
        settings = current_app.config["ACADEMY_SETTINGS"]
        return cls(base_url=settings.base_url.rstrip("/"), data_dir=Path(settings.data_dir))


def new_code() -> str:
    """A fresh verification code, ``XXXX-XXXX-XXXX``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(typed: str) -> str | None:
    """The code as stored, from what someone typed or scanned; ``None`` when it cannot be one.

    Case, spaces and hyphens do not matter, and O, I and L are read as 0, 1 and 1.
    """
    if not isinstance(typed, str) or len(typed) > 40:
        return None
    raw = re.sub(r"[\s-]", "", typed).upper().translate(_TYPED)
    if len(raw) != CODE_LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def find(session: Session, typed: str) -> Certificate | None:
    """The certificate with the code ``typed`` (see :func:`normalise_code`), if any."""
    code = normalise_code(typed)
    if code is None:
        return None
    return session.scalar(select(Certificate).where(Certificate.code == code))


def get_by_code(session: Session, typed: str) -> Certificate:
    """Like :func:`find`, raising :class:`NotFound` with a message for people."""
    certificate = find(session, typed)
    if certificate is None:
        raise unknown_code()
    return certificate


def unknown_code() -> NotFound:
    """The answer to a code no certificate has (or one the asker may not see the files of)."""
    return NotFound(_("No certificate has this verification code. Check the code printed on the certificate."))


def _competencies(courses: Sequence[Course]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    listed = []
    for course in courses:
        for item in course.competencies or []:
            pair = (item.get("ko", ""), item.get("en", ""))
            if pair not in seen:
                seen.add(pair)
                listed.append({"ko": pair[0], "en": pair[1]})
    return listed


def _subject(completion: Completion) -> tuple[str, str, str, str, float, list[dict[str, str]]]:
    """(kind, slug, title_ko, title_en, hours, competencies) of what ``completion`` completed."""
    if completion.course is not None:
        course = completion.course
        return "course", course.slug, course.title_ko, course.title_en, course.hours, _competencies([course])
    track: Track = completion.track
    courses = [c for c in track.courses if c.active]
    return ("track", track.slug, track.title_ko, track.title_en, sum(c.hours for c in courses),
            _competencies(courses))


def statement_of(certificate: Certificate, email: str, subject_slug: str) -> vc.Statement:
    """The plain values a credential is built from."""
    return vc.Statement(
        code=certificate.code, kind=certificate.kind, subject_slug=subject_slug,
        holder_name=certificate.holder_name, holder_email=email,
        title_ko=certificate.title_ko, title_en=certificate.title_en,
        track_title_ko=certificate.track_title_ko, track_title_en=certificate.track_title_en,
        hours=certificate.hours,
        competencies=certificate.competency_pairs,
        completed_at=certificate.completed_at, issued_at=certificate.issued_at)


def _of_completion(session: Session, completion_id: int) -> Certificate | None:
    return session.scalar(select(Certificate).where(Certificate.completion_id == completion_id))


def issue(session: Session, completion: Completion, *, issuer: Issuer | None = None,
          now: dt.datetime | None = None) -> Certificate:
    """The certificate of ``completion`` (in force), issued now unless it already has one.

    Runs in the caller's transaction.  Raises :class:`Conflict` for a withdrawn completion.
    """
    existing = _of_completion(session, completion.id)
    if existing is not None:
        return existing
    if not completion.in_force:
        raise Conflict(_("A withdrawn completion has no certificate."))
    issuer = issuer or Issuer.from_app()
    now = (now or utcnow()).replace(microsecond=0)
    kind, slug, title_ko, title_en, hours, competencies = _subject(completion)
    user: User = completion.user
    key = current_key(issuer.data_dir)
    for _attempt in range(5):
        certificate = Certificate(
            code=new_code(), completion_id=completion.id, user_id=user.id, kind=kind,
            holder_name=user.name, title_ko=title_ko, title_en=title_en,
            track_title_ko=completion.track.title_ko, track_title_en=completion.track.title_en,
            hours=hours, competencies=competencies, completed_at=completion.completed_at.replace(microsecond=0),
            issued_at=now, key_id=key.kid, credential="")
        certificate.credential = vc.sign(statement_of(certificate, user.email, slug), issuer.base_url, key)
        try:
            with session.begin_nested():
                session.add(certificate)
                session.flush()
        except IntegrityError:
            # Another transaction issued this completion's certificate first, or (once in 2**60) the
            # code was taken: look again.
            existing = _of_completion(session, completion.id)
            if existing is not None:
                return existing
            continue
        record(session, "certificate.issue", actor=None, target_type="certificate", target_id=certificate.code,
               learner=user.id)
        return certificate
    raise RuntimeError("could not find a free certificate code")


def issue_missing(session: Session, *, issuer: Issuer | None = None, now: dt.datetime | None = None,
                  user_ids: Sequence[int] | None = None) -> int:
    """Issue the certificate of every completion in force that has none yet; returns how many."""
    query = (select(Completion).outerjoin(Certificate, Certificate.completion_id == Completion.id)
             .where(Completion.withdrawn_at.is_(None), Certificate.id.is_(None)).order_by(Completion.id))
    if user_ids is not None:
        query = query.where(Completion.user_id.in_(list(user_ids)))
    issued = 0
    for completion in session.scalars(query).all():
        issue(session, completion, issuer=issuer, now=now)
        issued += 1
    return issued


def revoke(session: Session, certificate: Certificate, *, actor: User | None, reason: str,
           now: dt.datetime | None = None, notify: bool = True) -> Certificate:
    """Revoke ``certificate`` for ``reason`` (required); audited, and the learner is told.

    Raises :class:`ValidationFailed` without a reason and :class:`Conflict` when it is already
    revoked; nothing changes then.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Give the reason for revoking the certificate."), field="reason")
    if len(reason) > REASON_MAX:
        raise ValidationFailed(_("The reason may be at most %(n)d characters.", n=REASON_MAX), field="reason")
    if not certificate.valid:
        raise Conflict(_("This certificate was already revoked."))
    certificate.revoked_at = now or utcnow()
    certificate.revoked_reason = reason
    certificate.revoked_by_id = None if actor is None else actor.id
    record(session, "certificate.revoke", actor=actor, target_type="certificate", target_id=certificate.code,
           learner=certificate.user_id, reason=reason)
    if notify:
        _tell_revoked(session, certificate)
    return certificate


def reason_text(certificate: Certificate) -> str:
    """Why it was revoked, in words (an admin's own words, or the system's reason)."""
    from academy.audit.labels import WITHDRAWAL_REASONS

    reason = certificate.revoked_reason or ""
    return str(WITHDRAWAL_REASONS[reason]) if reason in SYSTEM_REASONS else reason


def _tell_revoked(session: Session, certificate: Certificate) -> None:
    user = certificate.user
    locale = user.locale or "ko"
    with force_locale(locale):
        title = certificate.title(locale)
        queue_mail(session, user.email, _("Your certificate for %(title)s was revoked", title=title),
                   _("Your certificate %(code)s for %(title)s is no longer valid; anyone who checks it is told so. "
                     "Reason: %(reason)s. If you think this is a mistake, reply to the academy's office.",
                     code=certificate.code, title=title, reason=reason_text(certificate)))


def revoke_for_completion(session: Session, completion: Completion, *, now: dt.datetime | None = None
                          ) -> Certificate | None:
    """A completion was withdrawn: revoke its certificate (the withdrawal mail tells the learner)."""
    certificate = _of_completion(session, completion.id)
    if certificate is None or not certificate.valid:
        return None
    return revoke(session, certificate, actor=None, reason="completion_withdrawn", now=now, notify=False)


def certificates_of(session: Session, user_id: int) -> list[Certificate]:
    """A learner's certificates, newest first (revoked ones too)."""
    return list(session.scalars(select(Certificate).where(Certificate.user_id == user_id)
                                .order_by(Certificate.issued_at.desc(), Certificate.id.desc())))


def listing(session: Session, *, search: str = "", status: str = "", page: int = 1,
            per_page: int = PER_PAGE) -> tuple[list[Certificate], int]:
    """Certificates for the admin's list, newest first, with the total: ``search`` matches a code,
    a holder's name or e-mail; ``status`` is ``valid``, ``revoked`` or empty for both."""
    from sqlalchemy import func

    query = select(Certificate).join(User, User.id == Certificate.user_id)
    search = search.strip()
    if search:
        code = normalise_code(search)
        like = f"%{search.lower()}%"
        conditions = [func.lower(Certificate.holder_name).like(like), func.lower(User.email).like(like),
                      func.lower(Certificate.title_ko).like(like), func.lower(Certificate.title_en).like(like)]
        if code is not None:
            conditions.append(Certificate.code == code)
        query = query.where(or_(*conditions))
    if status == "valid":
        query = query.where(Certificate.revoked_at.is_(None))
    elif status == "revoked":
        query = query.where(Certificate.revoked_at.is_not(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.options(joinedload(Certificate.user))
                           .order_by(Certificate.issued_at.desc(), Certificate.id.desc())
                           .offset((max(page, 1) - 1) * per_page).limit(per_page)).all()
    return list(rows), total


def pdf_of(certificate: Certificate, *, issuer: Issuer | None = None) -> bytes:
    """The certificate's PDF."""
    issuer = issuer or Issuer.from_app()
    return render(PdfText(
        code=certificate.code, kind=certificate.kind, holder_name=certificate.holder_name,
        title_ko=certificate.title_ko, title_en=certificate.title_en,
        track_title_ko=certificate.track_title_ko, track_title_en=certificate.track_title_en,
        hours=certificate.hours,
        competencies=certificate.competency_pairs,
        completed_on=completed_on(certificate.completed_at), issued_on=completed_on(certificate.issued_at),
        verify_url=vc.verify_url(issuer.base_url, certificate.code)))


def public_json(certificate: Certificate, *, issuer: Issuer | None = None) -> dict[str, object]:
    """What ``GET /api/v1/certificates/<code>`` answers: the statement, the status and the credential."""
    issuer = issuer or Issuer.from_app()
    body: dict[str, object] = {
        "code": certificate.code,
        "status": certificate.status,
        **certificate.statement(),
        "issuer": {"name": vc.ISSUER_NAME, "url": issuer.base_url},
        "verify_url": vc.verify_url(issuer.base_url, certificate.code),
        "credential": certificate.credential,
    }
    if certificate.revoked_at is not None:
        body["revoked_at"] = vc.iso_utc(certificate.revoked_at)
    return body
