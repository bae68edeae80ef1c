"""The inbox pages: messages, one message, and which kinds also come by mail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from academy.extensions import db
from academy.inbox import services
from academy.inbox.models import KINDS
from academy.web.access import login_required

bp = Blueprint("inbox", __name__, url_prefix="/inbox")


@bp.app_context_processor
def _unread() -> dict[str, Any]:
    def unread() -> int:
        return services.unread_count(db.session, current_user.id) if current_user.is_authenticated else 0

    return {"inbox_unread": unread}


@bp.route("")
@login_required
def index() -> Any:
    """The signed-in user's messages, newest first."""
    page = max(request.args.get("page", 1, type=int), 1)
    messages, total = services.messages_of(db.session, current_user.id, page=page)
    return render_template("inbox/index.html", messages=messages, total=total, page=page,
                           per_page=services.PER_PAGE)


@bp.route("/<id:message_id>")
@login_required
def message(message_id: int) -> Any:
    """One message, marked read."""
    row = services.open_message(db.session, current_user.id, message_id)
    if row is None:
        abort(404)
    db.session.commit()
    return render_template("inbox/message.html", message=row)


@bp.route("/read-all", methods=["POST"])
@login_required
def read_all() -> Any:
    """Mark every message read."""
    services.mark_all_read(db.session, current_user.id)
    db.session.commit()
    return redirect(url_for("inbox.index"), 303)


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings() -> Any:
    """Which kinds of message also come by mail."""
    if request.method == "POST":
        services.set_mail_kinds(db.session, current_user.id, request.form.getlist("mail"))
        db.session.commit()
        flash(_("Your mail settings were saved."), "success")
        return redirect(url_for("inbox.settings"), 303)
    return render_template("inbox/settings.html", kinds=KINDS, mailed=services.mail_kinds(db.session, current_user.id))
