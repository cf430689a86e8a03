"""The audit log's one writer: a row recording who did what to which target, written in the
transaction of the action itself, so no action goes unrecorded and no row claims an action that
rolled back. Never a secret in `detail`."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert

from baton.store.admin import Actor
from baton.store.schema import audit_log


def record(
    conn: Connection,
    actor: Actor,
    action: str,
    target_kind: str,
    target_id: str,
    detail: dict[str, Any] | None,
) -> None:
    """Writes the audit row of `action` (e.g. "client.create") by `actor` on the target."""
    conn.execute(
        insert(audit_log).values(
            actor=actor.username,
            action=action,
            target_kind=target_kind,
            target_id=target_id,
            detail=json.dumps(detail, sort_keys=True) if detail is not None else None,
            occurred_at=actor.now,
            source_address=actor.address,
        )
    )
