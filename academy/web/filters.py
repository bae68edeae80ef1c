"""Template helpers: Seoul time, localized titles, status labels, grading problems."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask_babel import format_datetime

from academy.grading.failure_text import describe_failure
from academy.grading.problem_text import describe_problem
from academy.i18n import DISPLAY_TIMEZONE, SUPPORTED_LOCALES, current_locale

SEOUL = ZoneInfo(DISPLAY_TIMEZONE)


def to_seoul(value: dt.datetime | None) -> dt.datetime | None:
    """Convert an aware UTC datetime to Asia/Seoul."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(SEOUL)


def seoul_datetime(value: dt.datetime | None, fmt: str = "yyyy-MM-dd HH:mm") -> str:
    """Format a UTC datetime in Asia/Seoul, e.g. ``2026-03-02 09:00 KST``."""
    if value is None:
        return ""
    # flask_babel converts to the selected time zone (Asia/Seoul) itself.
    return f"{format_datetime(value, fmt)} KST"


def seoul_date(value: dt.datetime | None) -> str:
    """Format the Asia/Seoul calendar date of a UTC datetime."""
    if value is None:
        return ""
    return format_datetime(value, "yyyy-MM-dd")


def init_app(app: Flask) -> None:
    """Register filters and globals used by every template."""
    app.add_template_filter(seoul_datetime, "seoul")
    app.add_template_filter(seoul_date, "seoul_date")
    app.add_template_filter(describe_problem, "problem")
    app.add_template_filter(describe_failure, "failure")

    @app.context_processor
    def inject_globals() -> dict[str, Any]:
        from academy.web.labels import enrollment_status_label, label_for, message_kind_label

        return {
            "current_locale": current_locale(),
            "supported_locales": SUPPORTED_LOCALES,
            "status_label": enrollment_status_label,
            "label_for": label_for,
            "message_kind_label": message_kind_label,
            "is_company_contact": _is_company_contact,
        }



def _is_company_contact() -> bool:
    """For the menu: the signed-in user is a company's contact (asked only when the menu is drawn)."""
    from academy.web.access import contact_company

    return contact_company() is not None
