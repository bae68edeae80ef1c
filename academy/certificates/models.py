"""Certificate rows: what a certificate states, frozen when it is issued, and whether it was revoked.

A certificate is issued for a completion in force (a course or a whole track) and states what
held then: the holder's name, the titles, hours, completion date and competencies are copied
into the row, so a later rename of a course or of the learner does not change a certificate
already handed to an employer.  Rows are never deleted: revoking sets ``revoked_at`` and a
reason, and the public verification page then says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.certificates.credential import iso_utc
from academy.completion.models import Completion
from academy.db import utcnow
from academy.extensions import db
from academy.users.models import User


class Certificate(db.Model):
    """One certificate: a completion of a course (``kind`` ``course``) or of a track (``track``)."""

    __tablename__ = "certificate"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The verification code printed on the PDF and in the QR code (see services.new_code).
    code: Mapped[str] = mapped_column(String(16), unique=True)
    completion_id: Mapped[int] = mapped_column(ForeignKey("completion.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "course" or "track"
    holder_name: Mapped[str] = mapped_column(String(100))
    title_ko: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    track_title_ko: Mapped[str] = mapped_column(String(200))
    track_title_en: Mapped[str] = mapped_column(String(200))
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    competencies: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # [{"ko": ..., "en": ...}]
    completed_at: Mapped[dt.datetime]
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The Open Badges 3.0 credential as a compact JWS, and the id of the key that signed it.
    credential: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    completion: Mapped[Completion] = relationship()
    user: Mapped[User] = relationship(foreign_keys=[user_id])

    def title(self, locale: str) -> str:
        """The title the certificate states, in ``locale`` (Korean unless English)."""
        return self.title_en if locale == "en" else self.title_ko

    def track_title(self, locale: str) -> str:
        """The track of the completed course (or the completed track), in ``locale``."""
        return self.track_title_en if locale == "en" else self.track_title_ko

    @property
    def competency_pairs(self) -> tuple[tuple[str, str], ...]:
        """The competencies as (Korean, English) pairs, as the PDF and the credential print them."""
        return tuple((c.get("ko", ""), c.get("en", "")) for c in self.competencies or [])

    @property
    def valid(self) -> bool:
        """True until it is revoked."""
        return self.revoked_at is None

    @property
    def status(self) -> str:
        """``valid`` or ``revoked`` (the word the API and ``academy certificate list`` use)."""
        return "valid" if self.valid else "revoked"

    def statement(self) -> dict[str, Any]:
        """What the certificate states, as the public API shows it (no e-mail, no internal ids)."""
        return {
            "holder": self.holder_name,
            "kind": self.kind,
            "title": {"ko": self.title_ko, "en": self.title_en},
            "track": {"ko": self.track_title_ko, "en": self.track_title_en},
            "hours": self.hours,
            "competencies": list(self.competencies or []),
            "completed_on": completed_on(self.completed_at).isoformat(),
            "issued_at": iso_utc(self.issued_at),
        }


def completed_on(moment: dt.datetime) -> dt.date:
    """The day of ``moment`` (stored in UTC) in Asia/Seoul, as the certificate prints it."""
    from zoneinfo import ZoneInfo

    from academy.i18n import DISPLAY_TIMEZONE

    return moment.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(DISPLAY_TIMEZONE)).date()

