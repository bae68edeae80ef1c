"""Audit entries in words: what was done, to which object (named), with which details.

The log stores stable codes (``submission.grade_by_hand``, ``target_type="submission"``,
``target_id="42"``); an admin reads "Points given by hand · 김학습 · 불량률 계산하기, attempt 2".
Every action the code records has a label here (a test greps the sources to keep it so).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.audit.models import AuditEntry

ACTION_LABELS: dict[str, Any] = {
    "assignment.publish": _l("Assignment version confirmed for release"),
    "assignment.publish_check": _l("Assignment version sent for checking"),
    "assignment.publish_retry": _l("Assignment version sent again"),
    "assignment.release": _l("Assignment version released"),
    "catalog.load": _l("Course catalogue loaded"),
    "certificate.issue": _l("Certificate issued"),
    "certificate.revoke": _l("Certificate revoked"),
    "cohort.create": _l("Cohort created"),
    "company_contact.appoint": _l("Company contact appointed"),
    "company_contact.approve": _l("Company contact request approved"),
    "company_contact.reject": _l("Company contact request declined"),
    "company_contact.request": _l("Asked to be a company contact"),
    "company_contact.revoke": _l("Company contact's access ended"),
    "cohort.set_capacity": _l("Cohort capacity changed"),
    "cohort.set_gpu_budget": _l("Cohort GPU budget changed"),
    "company.set_gpu_budget": _l("Company GPU budget changed"),
    "completion.record": _l("Completion recorded"),
    "completion.withdraw": _l("Completion withdrawn"),
    "enrollment.approve": _l("Enrollment approved"),
    "enrollment.move": _l("Learner moved to another cohort"),
    "enrollment.reject": _l("Enrollment rejected"),
    "extension.grant": _l("Deadline extended"),
    "lab.launch": _l("Lab started"),
    "lab.stop": _l("Lab stopped"),
    "submission.create": _l("Notebook submitted"),
    "submission.grade_by_hand": _l("Points given by hand"),
    "submission.override": _l("Autograded points changed by hand"),
    "submission.flag_review": _l("Flagged score reviewed"),
    "submission.regrade": _l("Regrading requested"),
    "submission.regraded": _l("Submission regraded"),
    "inbox.announce": _l("Announcement sent to a cohort"),
    "teaching.nudge": _l("Nudge sent to learners at risk"),
    "token.create": _l("Access token created"),
    "token.revoke": _l("Access token revoked"),
    "user.consent": _l("Privacy consent given"),
    "user.create": _l("Account created"),
    "user.import": _l("Employees imported"),
    "user.invite": _l("Invitation sent"),
    "user.password_change": _l("Password changed"),
    "user.password_reset": _l("Password reset"),
    "user.password_reset_requested": _l("Password reset requested"),
    "user.register": _l("Account registered"),
    "user.set_active": _l("Account enabled or disabled"),
    "user.set_role": _l("Role changed"),
}

DETAIL_LABELS: dict[str, Any] = {
    "assignment": _l("Assignment"),
    "attempt": _l("Attempt"),
    "capacity": _l("Capacity"),
    "created": _l("Created"),
    "deactivated": _l("Deactivated"),
    "due_at": _l("New deadline"),
    "email": _l("Email"),
    "from_cohort": _l("From cohort"),
    "gpu_budget_hours": _l("GPU budget (hours)"),
    "previous_gpu_budget_hours": _l("GPU budget before (hours)"),
    "gpu_hours_used": _l("GPU hours used"),
    "to_cohort": _l("To cohort"),
    "learner": _l("Learner"),
    "previous_score": _l("Score before"),
    "profile": _l("Lab environment"),
    "reason": _l("Reason"),
    "role": _l("Role"),
    "score": _l("Score"),
    "updated": _l("Updated"),
    "version": _l("Version"),
}

#: Why a completion was withdrawn (``academy.completion.services.REASONS``).
WITHDRAWAL_REASONS: dict[str, Any] = {
    "score_changed": _l("A score changed (grading by hand or a regrade)"),
    "rule_changed": _l("The course's passing rule changed"),
    "deadline": _l("Results became final at the deadline"),
    "recompute": _l("Completions were judged again"),
    "course_withdrawn": _l("A course of the track is no longer completed"),
    # a certificate revoked by the system rather than by an admin (``academy.certificates.services``)
    "completion_withdrawn": _l("The completion was withdrawn"),
}


#: Why a lab was stopped (``academy.labs.launch.stop_lab``'s ``reason``).
LAB_STOP_REASONS: dict[str, Any] = {
    "user": _l("Stopped by the learner"),
    "admin": _l("Stopped by an administrator"),
    "instructor": _l("Stopped by an instructor"),
    "replaced": _l("Another lab was opened"),
    "took_cpu": _l("Left the GPU line for a CPU lab"),
    "quota": _l("The course's GPU hours were used up"),
    "budget": _l("The cohort's or company's GPU budget was used up"),
}


def action_label(action: str) -> str:
    """The action in words (the code itself only for an action nobody labelled)."""
    label = ACTION_LABELS.get(action)
    return str(label) if label is not None else action


@dataclass(frozen=True)
class DescribedEntry:
    """An audit entry as the log page shows it."""

    entry: AuditEntry
    action: str
    target: str
    details: list[tuple[str, str]]


def describe(session: Session, entries: Iterable[AuditEntry], locale: str) -> list[DescribedEntry]:
    """Label each entry's action, name its target and its details, with one query per kind of target."""
    from academy.catalog.models import Assignment
    from academy.certificates.models import Certificate
    from academy.completion.models import Completion
    from academy.enrollment.models import Cohort, Enrollment
    from academy.grading.models import Submission
    from academy.labs.models import LabSession
    from academy.users.models import ApiToken, User

    entries = list(entries)
    ids: dict[str, set[int]] = defaultdict(set)
    for entry in entries:
        if entry.target_type and entry.target_id and str(entry.target_id).isdigit():
            ids[entry.target_type].add(int(entry.target_id))
        learner = (entry.data or {}).get("learner")
        if isinstance(learner, int):
            ids["user"].add(learner)

    def load(model: Any, kind: str) -> dict[int, Any]:
        if not ids.get(kind):
            return {}
        return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids[kind])))}

    users = load(User, "user")
    assignments = load(Assignment, "assignment")
    cohorts = load(Cohort, "cohort")
    enrollments = load(Enrollment, "enrollment")
    submissions = load(Submission, "submission")
    labs = load(LabSession, "lab_session")
    tokens = load(ApiToken, "api_token")
    completions = load(Completion, "completion")
    codes = {str(e.target_id) for e in entries if e.target_type == "certificate" and e.target_id}
    certificates = {row.code: row for row in session.scalars(select(Certificate).where(Certificate.code.in_(codes)))
                    } if codes else {}

    def person(user: Any) -> str:
        return f"{user.name} ({user.email})" if getattr(user, "name", None) else user.email

    def target(entry: AuditEntry) -> str:
        kind, raw = entry.target_type, entry.target_id
        key = int(raw) if raw and str(raw).isdigit() else None
        if kind == "user" and key in users:
            return person(users[key])
        if kind == "assignment" and key in assignments:
            row = assignments[key]
            return f"{row.course.title(locale)} · {row.title(locale)}"
        if kind == "cohort" and key in cohorts:
            return cohorts[key].name
        if kind == "enrollment" and key in enrollments:
            row = enrollments[key]
            return f"{person(row.user)} · {row.cohort.name}"
        if kind == "submission" and key in submissions:
            row = submissions[key]
            return f"{person(row.user)} · {row.assignment.title(locale)} · {_attempt(row.attempt)}"
        if kind == "lab_session" and key in labs:
            row = labs[key]
            user = session.get(User, row.user_id)
            course = row.course.title(locale) if getattr(row, "course", None) is not None else ""
            return " · ".join(part for part in (person(user) if user else "", course) if part)
        if kind == "completion" and key in completions:
            row = completions[key]
            return f"{person(row.user)} · {row.title(locale)}"
        if kind == "certificate" and raw in certificates:
            row = certificates[raw]
            return f"{person(row.user)} · {row.title(locale)} · {row.code}"
        if kind == "api_token" and key in tokens:
            return str(tokens[key].name)
        if kind == "catalog":
            return str(_l("Course catalogue"))
        if kind == "company":
            return str((entry.data or {}).get("company") or _l("Company"))
        return "" if key is None and not raw else str(_l("(deleted)"))

    def details(entry: AuditEntry) -> list[tuple[str, str]]:
        shown = []
        for key, value in (entry.data or {}).items():
            label = DETAIL_LABELS.get(key)
            if label is None or isinstance(value, (dict, list)):
                continue  # internal bookkeeping (digests, file lists) stays in the database
            if key == "learner" and isinstance(value, int) and value in users:
                value = person(users[value])
            elif key == "reason" and entry.action == "lab.stop" and value in LAB_STOP_REASONS:
                value = LAB_STOP_REASONS[value]
            elif key == "reason" and value in WITHDRAWAL_REASONS:
                value = WITHDRAWAL_REASONS[value]
            elif key.endswith("gpu_budget_hours") and value is None:
                value = _l("no budget")
            elif isinstance(value, str) and key.endswith("_at"):
                value = _when(value)
            shown.append((str(label), str(value)))
        return shown

    return [DescribedEntry(entry, action_label(entry.action), target(entry), details(entry)) for entry in entries]


def _when(value: str) -> str:
    """An ISO timestamp as the portal shows times (Asia/Seoul)."""
    import datetime as dt

    from academy.web.filters import seoul_datetime

    try:
        return seoul_datetime(dt.datetime.fromisoformat(value))
    except ValueError:
        return value


def _attempt(n: int) -> str:
    from flask_babel import gettext

    return gettext("Attempt %(n)d", n=n)
