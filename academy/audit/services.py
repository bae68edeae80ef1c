"""Writing to the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from academy.audit.models import AuditEntry
from academy.users.models import User


def record(
    session: Session,
    action: str,
    *,
    actor: User | None,
    target_type: str | None = None,
    target_id: object | None = None,
    **data: Any,
) -> AuditEntry:
    """Add an audit entry to ``session`` (the caller's transaction; nothing is flushed or committed).

    ``actor`` is who did it, ``None`` for the system (a job, the command line, an anonymous
    visitor); it must have an id already (flushed), since the entry keeps only the id.
    """
    if actor is not None and actor.id is None:
        raise ValueError(f"audit {action!r}: the actor has no id yet; flush it first")
    entry = AuditEntry(
        action=action,
        actor_id=None if actor is None else actor.id,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        data=data,
    )
    session.add(entry)
    return entry
