"""Helpers shared by form views."""

from __future__ import annotations

from flask import flash
from flask_wtf import FlaskForm

from academy.errors import AcademyError


def apply_error(form: FlaskForm, exc: AcademyError) -> None:
    """Show a domain error next to its field when the form has it, else as a message."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*list(field.errors), str(exc)]
    else:
        flash(str(exc), "danger")
