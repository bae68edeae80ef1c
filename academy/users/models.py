"""Account rows: users, companies, personal access tokens."""

from __future__ import annotations

import datetime as dt
import enum

from flask_login import UserMixin
from sqlalchemy import JSON, Enum, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.db import utcnow
from academy.extensions import db


class Role(enum.Enum):
    """What a user may do: learners learn, instructors teach their courses, admins run the academy."""

    learner = "learner"
    instructor = "instructor"
    admin = "admin"


class Company(db.Model):
    """An employer, identified by its business registration number."""

    __tablename__ = "company"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    business_number: Mapped[str] = mapped_column(String(12), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: GPU-hours its employees' GPU labs may use per calendar year (Asia/Seoul); None: no budget
    #: (``academy.labs.budgets``).
    gpu_budget_hours: Mapped[float | None] = mapped_column(Float)

    employees: Mapped[list[User]] = relationship(back_populates="company")


class User(UserMixin, db.Model):
    """A person with an account on the portal."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="user_role", native_enum=False, length=20), default=Role.learner
    )
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), index=True)
    region: Mapped[str | None] = mapped_column(String(40))
    industry: Mapped[str | None] = mapped_column(String(40))
    job_role: Mapped[str | None] = mapped_column(String(40))
    locale: Mapped[str | None] = mapped_column(String(8))
    consent_at: Mapped[dt.datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    company: Mapped[Company | None] = relationship(back_populates="employees")

    @property
    def is_active(self) -> bool:  # Flask-Login reads this
        return self.active

    @property
    def is_admin(self) -> bool:
        """True for an active admin: a deactivated admin is no admin (``permissions.is_admin`` asks this)."""
        return self.active and self.role is Role.admin

    @property
    def is_instructor(self) -> bool:
        """True for an active instructor, as :attr:`is_admin` is for admins."""
        return self.active and self.role is Role.instructor

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role.value}>"


class ApiToken(db.Model):
    """A personal access token for the JSON API; only its SHA-256 digest is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()
