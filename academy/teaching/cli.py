"""``academy gradebook``: the gradebook's kept cells on the command line."""

from __future__ import annotations

import sys
import time

import click
from flask.cli import with_appcontext


@click.group("gradebook")
def gradebook_group() -> None:
    """The course gradebooks' kept cells (one per learner and assignment attempted)."""


@gradebook_group.command("rebuild")
@click.option("--course", "course_id", type=int, default=None, help="Only this course (its id).")
@with_appcontext
def gradebook_rebuild_command(course_id: int | None) -> None:
    """Compute every kept cell again from the attempts, by the portal's own rules (idempotent).

    For data written around the portal (raw SQL, PostgreSQL's COPY, a restored table); the portal's
    own writes keep the cells as they commit.
    """
    from academy.catalog.models import Course
    from academy.extensions import db
    from academy.teaching.cells import rebuild

    if course_id is not None and db.session.get(Course, course_id) is None:
        click.echo(f"error: no course with id {course_id}", err=True)
        sys.exit(2)
    started = time.perf_counter()
    written = rebuild(db.session, course_ids=None if course_id is None else [course_id])
    db.session.commit()
    click.echo(f"gradebook cells written: {written} ({time.perf_counter() - started:.1f} s)")
