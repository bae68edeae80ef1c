"""Translated labels for stored codes (statuses, regions, industries, roles)."""

from __future__ import annotations

from flask_babel import gettext as _

from academy.users import reference


def enrollment_status_label(status: object) -> str:
    """The learner-facing name of an enrollment status (enum or its value)."""
    value = getattr(status, "value", status)
    labels = {
        "pending": _("Awaiting approval"),
        "enrolled": _("Enrolled"),
        "waitlisted": _("On the waitlist"),
        "withdrawn": _("Withdrawn"),
        "rejected": _("Not approved"),
    }
    return labels.get(str(value), str(value))


def role_label(role: object) -> str:
    """The name of a role."""
    value = getattr(role, "value", role)
    labels = {"learner": _("Learner"), "instructor": _("Instructor"), "admin": _("Administrator")}
    return labels.get(str(value), str(value))


def label_for(kind: str, code: str | None) -> str:
    """The label of a region, industry, job role or user role code."""
    if code is None:
        return ""
    if kind == "role":
        return role_label(code)
    table = {"region": reference.REGIONS, "industry": reference.INDUSTRIES, "job_role": reference.JOB_ROLES}[kind]
    label = table.get(code)
    return str(label) if label is not None else code


def staff_standing_label(status: str) -> str:
    """A learner's standing on an assignment as course staff read it (the gradebook and its exports)."""
    labels = {
        "not_started": _("Not submitted"),
        "grading": _("Grading"),
        "grader_error": _("Grader error"),
        "held": _("Submitted"),
        "waiting_for_instructor": _("Written answers to grade"),
        "passed": _("Passed"),
        "not_passed": _("Not passed yet"),
    }
    return labels.get(status, status)


def message_kind_label(kind: str) -> str:
    """What a kind of inbox message is about, as its reader names it."""
    labels = {
        "score": _("Scores"),
        "score_changed": _("Changed scores"),
        "nudge": _("Messages from your instructor"),
        "announcement": _("Announcements to your cohort"),
        "deadline": _("Deadlines in the next 48 hours"),
        "lab_quota": _("Lab GPU time running out"),
    }
    return labels.get(kind, kind)
