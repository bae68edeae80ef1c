"""Bringing a data directory to the current code: migrations, then the course catalogue and its releases."""

from __future__ import annotations

from pathlib import Path

from flask import current_app


def run_init() -> str:
    """Upgrade the database to the latest migration and load ``courses/``; returns a summary.

    Safe to run again: migrations already applied and unchanged courses are skipped.
    """
    from flask_migrate import upgrade

    from academy.catalog.services import load_catalog
    from academy.extensions import db

    settings = current_app.config["ACADEMY_SETTINGS"]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade()
    from academy.grading.releases import release_all

    report = load_catalog(db.session, Path(current_app.config["ACADEMY_COURSES_DIR"]))
    db.session.commit()
    released = release_all(db.session, settings.data_dir)
    db.session.commit()
    return f"{report.summary()}; {released} assignment versions released"
