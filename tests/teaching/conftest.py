"""Fixtures of the teaching tests: learners by key and courses of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from academy.extensions import db


@pytest.fixture
def learner(make_user: Any) -> Callable[[str], int]:
    """Factory: ``learner("minsu")`` → the id of a learner named and mailed after the key."""
    return lambda key: make_user(name=key, email=f"{key}@example.kr")


@pytest.fixture
def course_of(app: Flask, make_track: Any) -> Callable[[], tuple[int, int]]:
    """Factory: a new track with its course (one assignment, "01-intro") → (track id, course id)."""
    def factory() -> tuple[int, int]:
        from academy.catalog.models import Course

        track_id = make_track()
        with app.app_context():
            return track_id, db.session.scalar(db.select(Course.id).where(Course.track_id == track_id))
    return factory
