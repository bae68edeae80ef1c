"""Alembic: upgrade to head, downgrade to base and up again, on SQLite and PostgreSQL,
and the models match the migrations (nothing left for autogenerate to find)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import inspect

from academy import create_app
from academy.extensions import db
from tests.support import ROOT

TABLES = {"user", "company", "track", "course", "course_instructor", "assignment", "cohort", "enrollment",
          "enrollment_event", "api_token", "audit_entry", "outbox_message", "assignment_release", "submission",
          "submission_file", "cell_score", "grading_job", "extension", "oauth_code", "oauth_token", "lab_session",
          "gpu_device", "gpu_grading_hold", "completion", "certificate", "stats_learner_course",
          "stats_refresh", "company_contact", "stats_cache", "view_stamp", "stats_learner_track", "inbox_message",
          "score_override", "mail_opt_out", "nudge", "gradebook_cell", "stats_best_score",
          "stats_course_day", "stats_month_funnel", "stats_month_company"}


@pytest.fixture
def migration_app(empty_database_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "secret_key": "m" * 40, "database_url": empty_database_url,
                      "data_dir": tmp_path / "data", "courses_dir": ROOT / "courses"})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_upgrade_downgrade_upgrade(migration_app: Flask) -> None:
    from flask_migrate import downgrade, upgrade

    upgrade()
    tables = set(inspect(db.engine).get_table_names())
    assert TABLES | {"alembic_version"} == tables
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    assert set(inspect(db.engine).get_table_names()) == tables


def test_models_match_migrations(migration_app: Flask) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade

    upgrade()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; run `flask --app academy db migrate`: {diff}"


def test_every_migration_has_a_downgrade() -> None:
    scripts = list((ROOT / "migrations" / "versions").glob("*.py"))
    assert scripts
    for script in scripts:
        downgrade_body = script.read_text().split("def downgrade", 1)[1]
        assert "op." in downgrade_body, f"{script.name} has an empty downgrade"
