"""The audit log page speaks the admin's language: actions in words, objects named, no internal codes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from academy.audit.labels import ACTION_LABELS
from tests.support import ROOT

RECORDED = re.compile(r"""record\(\s*(?:db\.)?session,\s*["']([a-z_]+\.[a-z_]+)["']""")


def test_every_recorded_action_has_a_label() -> None:
    found = {match for path in (ROOT / "academy").rglob("*.py")
             for match in RECORDED.findall(path.read_text(encoding="utf-8"))}
    assert len(found) >= 20  # the pattern still finds the calls
    assert not sorted(found - set(ACTION_LABELS)), "label these actions in academy/audit/labels.py"


def test_the_audit_page_names_actions_and_objects(app: Flask, client: FlaskClient, login_as: Any,
                                                  make_user: Any, make_cohort: Any) -> None:
    from academy.audit.services import record
    from academy.enrollment.models import Cohort
    from academy.extensions import db
    from academy.users.models import User

    admin_id = login_as("admin")
    learner_id = make_user("learner", email="kim@example.kr", name="김학습")
    cohort_id = make_cohort(capacity=3)
    with app.app_context():
        admin, learner = db.session.get(User, admin_id), db.session.get(User, learner_id)
        cohort = db.session.get(Cohort, cohort_id)
        record(db.session, "user.set_role", actor=admin, target_type="user", target_id=learner.id, role="instructor")
        record(db.session, "cohort.set_capacity", actor=admin, target_type="cohort", target_id=cohort.id, capacity=5)
        record(db.session, "extension.grant", actor=admin, target_type="assignment", target_id=999_999,
               learner=learner.id, due_at=dt.datetime(2026, 12, 31, 14, 59, tzinfo=dt.UTC).isoformat())
        cohort_name = cohort.name
        db.session.commit()
    page = client.get("/admin/audit").get_data(as_text=True)
    for words in ("역할 변경", "김학습 (kim@example.kr)", "기수 정원 변경", cohort_name, "마감 연장",
                  "2026-12-31 23:59 KST", "(삭제됨)"):
        assert words in page, words
    for code in ("user.set_role", "cohort.set_capacity", "extension.grant", "due_at", '"capacity"'):
        assert code not in page, code
