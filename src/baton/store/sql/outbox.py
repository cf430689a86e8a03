"""The webhook outbox: security events written in the transaction that decides them, delivered
later (by `baton.server.observability.delivery`, through `SQLStore.claim_deliveries` and the
methods after it) at least once.

Rows are written whether or not a webhook URL is configured. Revocations also happen in
processes that know nothing of the server's options (`baton grants revoke`, another server), and a
security event is rare next to a rotation (one row per revocation or reuse, none per refresh),
so the table stays small; the purge deletes rows older than the retention, delivered or not.
An undelivered row older than the delivery's maximum age is never sent: configuring a URL later
does not unleash weeks of old events.

A payload never holds a token, code or secret: ids, client, subject, generation, time, kind.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from baton.core.facts import GrantFacts
from baton.core.tokens import random_id
from baton.core.vocabulary import REUSE_EVENT_KINDS, RevocationCause, WebhookEventType
from baton.store.base import Delivery
from baton.store.prepared import Prepared
from baton.store.schema import grants, users, webhook_outbox


def _payload(event_type: WebhookEventType, fields: dict[str, Any], now: int) -> str:
    """An event as receivers get it, with an id they use to drop a second delivery of it."""
    event = {"id": random_id("evt_"), "type": event_type, "occurred_at": now, **fields}
    return json.dumps(event, separators=(",", ":"))


def enqueue(
    conn: Connection, event_type: WebhookEventType, fields: dict[str, Any], now: int
) -> None:
    """One event."""
    _ENQUEUE.run(
        conn,
        event_type=event_type,
        payload=_payload(event_type, fields, now),
        created_at=now,
        next_attempt_at=now,
    )


def enqueue_many(
    conn: Connection, event_type: WebhookEventType, many: list[dict[str, Any]], now: int
) -> None:
    """Several events of one type in one statement (a client's grants revoked at once)."""
    if not many:
        return
    conn.execute(
        insert(webhook_outbox),
        [
            {
                "event_type": event_type,
                "payload": _payload(event_type, fields, now),
                "created_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for fields in many
        ],
    )


_ENQUEUE = Prepared(
    insert(webhook_outbox).values(
        event_type=bindparam("event_type"),
        payload=bindparam("payload"),
        created_at=bindparam("created_at"),
        attempts=0,
        next_attempt_at=bindparam("next_attempt_at"),
    )
)


def grant_revoked(
    conn: Connection,
    grant_id: str,
    reason: RevocationCause,
    now: int,
    known: GrantFacts | None = None,
) -> None:
    """`grant.revoked`; `reason` is the grant's `revoked_reason`. `known`: the grant's facts
    when the caller has them (one query less on the revocation endpoint's path)."""
    client_id: str | None
    subject: str | None
    if known is not None:
        client_id, subject = known.client_id, known.subject
    else:
        row = conn.execute(
            select(grants.c.client_id, users.c.username)
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(grants.c.id == grant_id)
        ).first()
        client_id, subject = (row.client_id, row.username) if row is not None else (None, None)
    fields = {"grant_id": grant_id, "client_id": client_id, "subject": subject, "reason": reason}
    enqueue(conn, WebhookEventType.GRANT_REVOKED, fields, now)


def security_event(conn: Connection, fields: dict[str, Any], now: int) -> None:
    """`reuse_detected` for a replayed refresh token or code, from the fields of its
    `security_events` row. Other kinds (a retry inside the leeway, say) are for the console's
    timeline, not an alarm: they send nothing."""
    if fields["kind"] not in REUSE_EVENT_KINDS:
        return
    sent = {k: v for k, v in fields.items() if k != "detail"}
    enqueue(conn, WebhookEventType.REUSE_DETECTED, sent, now)


def any_due(conn: Connection, now: int, oldest: int) -> bool:
    """A read first, so an idle outbox costs no write transaction (SQLite has one writer)."""
    ob = webhook_outbox
    found = conn.execute(
        select(ob.c.id)
        .where(ob.c.delivered_at.is_(None), ob.c.next_attempt_at <= now, ob.c.created_at >= oldest)
        .limit(1)
    ).first()
    return found is not None


def claim_due(
    conn: Connection, now: int, lease_until: int, oldest: int, limit: int
) -> list[Delivery]:
    """Leases the due rows to the caller until `lease_until`.

    The conditional UPDATE is the lease: on PostgreSQL a concurrent claimer waits for our row
    lock and then no longer finds the row due; on SQLite writers are serialized. A process that
    dies holding a lease loses it when `lease_until` passes, and the row is sent again (at least
    once). The attempt is counted at the claim, so a crash mid-send counts too.
    """
    ob = webhook_outbox
    due = conn.execute(
        select(ob.c.id, ob.c.event_type, ob.c.payload, ob.c.attempts, ob.c.created_at)
        .where(ob.c.delivered_at.is_(None), ob.c.next_attempt_at <= now, ob.c.created_at >= oldest)
        .order_by(ob.c.next_attempt_at, ob.c.id)
        .limit(limit)
    ).all()
    claimed = []
    for row in due:
        leased = conn.execute(
            update(ob)
            .where(ob.c.id == row.id, ob.c.delivered_at.is_(None), ob.c.next_attempt_at <= now)
            .values(next_attempt_at=lease_until, attempts=ob.c.attempts + 1)
        ).rowcount
        if leased == 1:
            claimed.append(
                Delivery(row.id, row.event_type, row.payload, row.attempts + 1, row.created_at)
            )
    return claimed


def mark_delivered(conn: Connection, delivery_id: int, now: int) -> None:
    conn.execute(
        update(webhook_outbox)
        .where(webhook_outbox.c.id == delivery_id)
        .values(delivered_at=now, last_error=None)
    )


def mark_failed(conn: Connection, delivery_id: int, next_attempt_at: int, error: str) -> None:
    """Records the error and when to try again (`NEVER`: given up)."""
    conn.execute(
        update(webhook_outbox)
        .where(webhook_outbox.c.id == delivery_id, webhook_outbox.c.delivered_at.is_(None))
        .values(next_attempt_at=next_attempt_at, last_error=error[:500])
    )


def purge_batch(conn: Connection, horizon: int, batch: int) -> int:
    """Rows created before the retention horizon, delivered or not."""
    ob = webhook_outbox
    old = select(ob.c.id).where(ob.c.created_at < horizon).limit(batch).scalar_subquery()
    return int(conn.execute(delete(ob).where(ob.c.id.in_(old))).rowcount)
