"""A company contact: one person, one company, appointed by an admin or requested and approved.

A contact sees their company's employees' enrollments, lab hours, progress, completions and
certificates, and nothing of any other company.  It is a role on top of the person's account
(an HR manager may also be a learner), so it is its own row rather than a value of ``User.role``.
Rows are kept when revoked or rejected, as the history of who could see what.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Enum, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.db import utcnow
from academy.extensions import db
from academy.users.models import Company, User


class ContactStatus(enum.Enum):
    """Where a contact stands: asked for, in force, refused or ended."""

    requested = "requested"
    approved = "approved"
    rejected = "rejected"
    revoked = "revoked"


_LIVE = text("status IN ('requested', 'approved')")


class CompanyContact(db.Model):
    """``user`` follows ``company``'s employees while ``status`` is ``approved``."""

    __tablename__ = "company_contact"
    __table_args__ = (
        # A person is (or asks to be) the contact of one company at a time.
        Index("uq_company_contact_live_user", "user_id", unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)
    status: Mapped[ContactStatus] = mapped_column(
        Enum(ContactStatus, name="contact_status", native_enum=False, validate_strings=True, length=20))
    note: Mapped[str | None] = mapped_column(String(500))  # why they ask, or why it was refused or ended
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    company: Mapped[Company] = relationship()
