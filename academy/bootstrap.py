"""Bringing a data directory to the current code: migrations, then the course catalogue and its releases."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app

from academy.catalog.manifest import RefusedCourse


@dataclass
class InitSummary:
    """What ``run_init`` did: one line (``str()``), the courses refused and notes on checks that could not run."""

    text: str
    refused: list[RefusedCourse] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text

    def problems(self) -> list[str]:
        """One line per problem: each refused course's, then the notes."""
        return [f"course {course.slug} not loaded: {problem}" for course in self.refused
                for problem in course.problems] + self.notes


def run_init(*, check_solutions: bool = True) -> InitSummary:
    """Upgrade the database to the latest migration and load ``courses/``; returns a summary.

    Safe to run again: migrations already applied and unchanged courses are skipped.  Every course is
    checked first (:mod:`academy.catalog.checks`): a course that fails is refused by name and the rest
    load.  ``check_solutions=False`` leaves out grading each assignment's solution (for callers that
    checked the same courses another way); the imports are still checked.
    """
    from flask_migrate import upgrade

    from academy.catalog.checks import course_checks
    from academy.catalog.services import load_catalog
    from academy.engine.sandbox.policy import default_lab_python
    from academy.extensions import db

    settings = current_app.config["ACADEMY_SETTINGS"]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade()
    from academy.completion.services import recompute_changed_rules, rule_snapshot
    from academy.grading.releases import release_all

    before = rule_snapshot(db.session)
    notes: list[str] = []

    def checks(catalog):  # noqa: ANN001, ANN202 - load_catalog's hook
        refused, found = course_checks(catalog, python=default_lab_python(), solutions=check_solutions)
        notes.extend(found)
        return refused

    report = load_catalog(db.session, Path(current_app.config["ACADEMY_COURSES_DIR"]), checks=checks)
    db.session.commit()
    released = release_all(db.session, settings.data_dir)
    db.session.commit()
    # A changed passing rule (or a new or removed assignment) decides completions anew.
    judged = recompute_changed_rules(db.session, before)
    db.session.commit()
    summary = f"{report.summary()}; {released} assignment versions released"
    if judged.recorded or judged.withdrawn:
        summary += f"; completions: {judged.recorded} recorded, {judged.withdrawn} withdrawn"
    return InitSummary(summary, report.refused, notes)
