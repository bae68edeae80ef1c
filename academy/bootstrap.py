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
    from academy.completion.services import recompute_changed_rules, rule_snapshot
    from academy.grading.releases import release_all

    before = rule_snapshot(db.session)
    report = load_catalog(db.session, Path(current_app.config["ACADEMY_COURSES_DIR"]))
    db.session.commit()
    released = release_all(db.session, settings.data_dir)
    db.session.commit()
    # A changed passing rule (or a new or removed assignment) decides completions anew.
    judged = recompute_changed_rules(db.session, before)
    db.session.commit()
    summary = f"{report.summary()}; {released} assignment versions released"
    if judged.recorded or judged.withdrawn:
        summary += f"; completions: {judged.recorded} recorded, {judged.withdrawn} withdrawn"
    return summary
