"""The Open Badges 3.0 credential of a certificate, signed as a JWT (VC-JWT).

The credential is a W3C Verifiable Credential of type ``OpenBadgeCredential``; as Open Badges
3.0 (section 8.2, "JSON Web Token Proof Format") describes, it travels as the ``vc`` claim of a
JWT signed with RS256, whose ``iss`` is the issuer's id, ``jti`` the credential's id and ``nbf``
the issuance time; the header names the key (``kid``) in ``/certificates/jwks.json``.  Anyone
can verify it offline with a standard JOSE library and that key set.

Only what the certificate states goes in: the holder's name (it is printed on the certificate),
never their e-mail address, which appears only as a salted hash so that an employer who knows
it can match it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from joserfc import jws

from academy.certificates.keys import ALGORITHM, SigningKey

CONTEXT = [
    "https://www.w3.org/2018/credentials/v1",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
]
ISSUER_NAME = {"ko": "경상북도 AI 새마을 아카데미", "en": "Gyeongbuk AI Saemaul Academy"}


@dataclass(frozen=True)
class Statement:
    """What a certificate states (plain values; see :class:`academy.certificates.models.Certificate`)."""

    code: str
    kind: str  # "course" or "track"
    subject_slug: str  # the course or track id in courses/
    holder_name: str
    holder_email: str
    title_ko: str
    title_en: str
    track_title_ko: str
    track_title_en: str
    hours: float
    competencies: tuple[tuple[str, str], ...]  # (ko, en)
    completed_at: dt.datetime  # UTC, naive
    issued_at: dt.datetime  # UTC, naive


def iso_utc(moment: dt.datetime) -> str:
    """``moment`` as the credential and the API write it: UTC, whole seconds, ``Z``."""
    return moment.replace(tzinfo=dt.UTC, microsecond=0).isoformat().replace("+00:00", "Z")


def _epoch(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def issuer_profile(base_url: str) -> dict[str, Any]:
    """The issuer's Open Badges Profile (also served at ``/certificates/issuer``)."""
    base = base_url.rstrip("/")
    return {
        "@context": CONTEXT,
        "id": f"{base}/certificates/issuer",
        "type": ["Profile"],
        "name": ISSUER_NAME["ko"],
        "url": base,
        "description": f"{ISSUER_NAME['ko']} ({ISSUER_NAME['en']})",
    }


def credential_url(base_url: str, code: str) -> str:
    """The credential's id: the public API address that answers whether it is still valid."""
    return f"{base_url.rstrip('/')}/api/v1/certificates/{code}"


def verify_url(base_url: str, code: str) -> str:
    """The public page printed on the certificate and in its QR code."""
    return f"{base_url.rstrip('/')}/verify/{code}"


def credential(statement: Statement, base_url: str) -> dict[str, Any]:
    """The OpenBadgeCredential for ``statement`` (unsigned)."""
    base = base_url.rstrip("/")
    salt = hashlib.sha256(f"{statement.code}:salt".encode()).hexdigest()[:16]
    email_hash = hashlib.sha256((statement.holder_email.strip().lower() + salt).encode()).hexdigest()
    hours = f"{statement.hours:g}"
    what = "과정" if statement.kind == "course" else "트랙"
    narrative = (f"{statement.title_ko} {what}({hours}시간)의 수료 기준을 모두 충족했습니다. / "
                 f"Met every completion requirement of {statement.title_en} ({hours} hours).")
    achievement: dict[str, Any] = {
        "id": f"{base}/certificates/achievements/{statement.kind}/{statement.subject_slug}",
        "type": ["Achievement"],
        "achievementType": "Certificate",
        "name": f"{statement.title_ko} ({statement.title_en})",
        "description": f"{statement.track_title_ko} · {statement.title_ko} / "
                       f"{statement.track_title_en} · {statement.title_en}",
        "criteria": {"narrative": narrative},
        "creator": {"id": f"{base}/certificates/issuer", "type": ["Profile"], "name": ISSUER_NAME["ko"]},
        "humanCode": statement.code,
        "fieldOfStudy": "Artificial Intelligence",
        "tag": [f"{ko} ({en})" for ko, en in statement.competencies],
    }
    return {
        "@context": CONTEXT,
        "id": credential_url(base, statement.code),
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "issuer": {"id": f"{base}/certificates/issuer", "type": ["Profile"], "name": ISSUER_NAME["ko"], "url": base},
        "issuanceDate": iso_utc(statement.issued_at),
        "awardedDate": iso_utc(statement.completed_at),
        "name": f"{statement.title_ko} 수료 (Certificate of Completion: {statement.title_en})",
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "identifier": [
                {"type": "IdentityObject", "identityType": "name", "hashed": False,
                 "identityHash": statement.holder_name},
                {"type": "IdentityObject", "identityType": "emailAddress", "hashed": True,
                 "identityHash": f"sha256${email_hash}", "salt": salt},
            ],
            "achievement": achievement,
        },
    }


def sign(statement: Statement, base_url: str, key: SigningKey) -> str:
    """The credential of ``statement`` as a compact JWS (a JWT whose ``vc`` claim is the credential)."""
    vc = credential(statement, base_url)
    claims = {
        "iss": vc["issuer"]["id"],
        "jti": vc["id"],
        "nbf": _epoch(statement.issued_at),
        "iat": _epoch(statement.issued_at),
        "vc": vc,
    }
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
    payload = json.dumps(claims, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    return jws.serialize_compact(header, payload, key.key, algorithms=[ALGORITHM])
