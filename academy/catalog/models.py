"""Catalog rows: tracks, courses, their instructors and assignments.

The rows mirror ``courses/``; ``academy init`` keeps them in step with the manifests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.db import utcnow
from academy.extensions import db


class Track(db.Model):
    """A learning path made of several courses, offered in cohorts."""

    __tablename__ = "track"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title_ko: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    description_ko: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    courses: Mapped[list[Course]] = relationship(
        back_populates="track", order_by="Course.position, Course.slug"
    )

    def title(self, locale: str) -> str:
        """The title in ``locale`` (Korean unless English is asked for)."""
        return self.title_en if locale == "en" and self.title_en else self.title_ko

    def description(self, locale: str) -> str:
        """The description in ``locale``."""
        return self.description_en if locale == "en" and self.description_en else self.description_ko


class Course(db.Model):
    """A course: an nbgrader course directory plus its manifest."""

    __tablename__ = "course"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("track.id"), index=True)
    title_ko: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    description_ko: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    lab_profile: Mapped[str] = mapped_column(String(40), default="cpu")
    gpu_hour_quota: Mapped[float] = mapped_column(Float, default=0.0)
    # "cpu", or "gpu": the grading worker takes a GPU seat for its submissions where one is free (grading.gpu)
    grading_profile: Mapped[str] = mapped_column(String(20), default="cpu", server_default="cpu")
    passing_rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What a learner who completes the course can do, printed on the certificate: [{"ko": ..., "en": ...}]
    competencies: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    source_path: Mapped[str] = mapped_column(String(500))
    manifest_hash: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    track: Mapped[Track] = relationship(back_populates="courses")
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="course", order_by="Assignment.position, Assignment.slug"
    )
    instructors: Mapped[list[CourseInstructor]] = relationship(
        back_populates="course", cascade="all, delete-orphan"
    )

    def title(self, locale: str) -> str:
        """The title in ``locale``."""
        return self.title_en if locale == "en" and self.title_en else self.title_ko

    def description(self, locale: str) -> str:
        """The description in ``locale``."""
        return self.description_en if locale == "en" and self.description_en else self.description_ko


class CourseInstructor(db.Model):
    """An instructor of a course, named by email in the manifest (the account may come later)."""

    __tablename__ = "course_instructor"
    __table_args__ = (UniqueConstraint("course_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254), index=True)

    course: Mapped[Course] = relationship(back_populates="instructors")


class Assignment(db.Model):
    """An nbgrader assignment: ``courses/<course>/source/<slug>/``."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("course_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    title_ko: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Deadline as days after the cohort starts; None means "by the end of the cohort".
    due_days: Mapped[int | None] = mapped_column(Integer)
    max_score: Mapped[float] = mapped_column(Float, default=0.0)
    notebooks: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Late policy, attempts and hidden-test visibility (see catalog.manifest.GRADING_DEFAULTS).
    grading: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    course: Mapped[Course] = relationship(back_populates="assignments")

    def policy(self, key: str) -> Any:
        """A grading-policy value, falling back to the defaults."""
        from academy.catalog.manifest import GRADING_DEFAULTS

        return (self.grading or {}).get(key, GRADING_DEFAULTS[key])

    def title(self, locale: str) -> str:
        """The title in ``locale``."""
        return self.title_en if locale == "en" and self.title_en else self.title_ko
