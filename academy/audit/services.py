"""Writing to the audit log."""

from __future__ import annotations

from typing import Any

from academy.audit.models import AuditEntry
from academy.extensions import db


def record(
    action: str,
    *,
    actor_id: int | None,
    target_type: str | None = None,
    target_id: object | None = None,
    **data: Any,
) -> AuditEntry:
    """Add an audit entry to the current transaction (flushed, not committed)."""
    entry = AuditEntry(
        action=action,
        actor_id=actor_id,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        data=data,
    )
    db.session.add(entry)
    return entry
