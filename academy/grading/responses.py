"""The answer to submitted notebooks, shared by the upload form and "Submit from my lab".

Files that pass preflight become a submission and a grading job; files that do not are kept
(by digest, in a signed token) and the preflight page asks the learner to confirm or fix them.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from itsdangerous import URLSafeTimedSerializer

from academy.catalog.models import Assignment
from academy.errors import AcademyError
from academy.extensions import db
from academy.grading import services
from academy.grading.storage import BlobStore, submission_store

_PENDING_SALT = "academy.pending-upload"
PENDING_MAX_AGE = 3600


def submission_files() -> BlobStore:
    """The store of submitted notebooks."""
    return submission_store(current_app.config["ACADEMY_DATA_DIR"])


def pending_serializer() -> URLSafeTimedSerializer:
    """Signs the files waiting on the preflight page."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_PENDING_SALT)


def accept_files(row: Assignment, files: dict[str, bytes], *, origin: str) -> Any:
    """Preflight, then store and queue a submission (uploads and submissions from the lab alike)."""
    try:
        accepted = services.accept_files(db.session, assignment=row, user=current_user, files=files,
                                         store=submission_files(), origin=origin,
                                         restore=request.form.get("restore") == "1")
        if accepted.submission is None or accepted.job is None:
            token = pending_serializer().dumps({
                "assignment": row.id, "user": current_user.id, "origin": origin,
                "files": {name: submission_files().put(data) for name, data in files.items()},
            })
            return render_template("grading/preflight.html", assignment=row, report=accepted.preflight,
                                   pending=token), 422
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("grading.assignment", assignment_id=row.id)), 303
    db.session.commit()  # sends the grading job's message
    message = _("Your notebook was received (attempt %(n)d). Grading has started.", n=accepted.submission.attempt)
    renamed = [report.taken_as for report in accepted.preflight.reports if report.renamed]
    if renamed:
        message += " " + _("Files taken as: %(files)s", files=", ".join(renamed))
    flash(message, "success")
    return redirect(url_for("grading.submission", public_id=accepted.submission.public_id), 303)
