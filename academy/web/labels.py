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
