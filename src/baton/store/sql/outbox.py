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

Back-channel logout tokens (OIDC Back-Channel Logout 1.0) go through the same outbox: a row with
a `destination` (the client's `backchannel_logout_uri`) whose payload is the token's claims as
the store knows them (`aud`, the user's own `subject`, `sid`, `jti`); the sender signs the token
at delivery, with the client's ID token algorithm, so no signed token is ever stored. They are
delivered whether or not a webhook URL is configured, and the delivery loops of this process are
woken (`BELL`) as soon as the transaction that wrote one has committed.

Policy notices (issue 28) go the same way: a row with a `destination` (the client's
`notify_url`) and a `PolicyNoticeEvent` as its `event_type`, whose payload is the notice's claims
but the signature's (`iss`, `iat`, `exp`): signed at delivery with the server's key, never
stored signed, and never holding a secret (settings, instants, the client's id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from sqlalchemy import ColumnElement, Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from baton.core.facts import GrantFacts
from baton.core.scope import parse as parse_scope
from baton.core.tokens import random_id
from baton.core.vocabulary import (
    BACKCHANNEL_LOGOUT_EVENT,
    REUSE_EVENT_KINDS,
    PolicyNoticeEvent,
    RevocationCause,
    WebhookEventType,
)
from baton.store.base import Delivery
from baton.store.prepared import Prepared
from baton.store.schema import clients, grants, users, webhook_outbox

if TYPE_CHECKING:
    from baton.store.engines import Runner

T = TypeVar("T")

WAKE_OUTBOX = "baton_wake_outbox"
"""`Connection.info` flag: this transaction wrote a back-channel logout (`write` rings `BELL`
once the runner has committed it)."""


async def write(runner: Runner, work: Callable[[Connection], T]) -> T:
    """Runs `work` as one write transaction of `runner`, and rings `BELL` once it has committed
    if it wrote a back-channel logout: every writer of the store (`SQLStore`, `AdminStore`) goes
    through here. The flag is taken off the connection whether `work` returned or raised, so a
    pooled connection never carries it into another transaction (a spurious ring there)."""

    def run(conn: Connection) -> tuple[T, bool]:
        try:
            result = work(conn)
        except BaseException:
            # A connection invalidated by the failure (the database went away) refuses even
            # `info`: the original error must reach the caller (a 503), not that refusal.
            with contextlib.suppress(SQLAlchemyError):
                conn.info.pop(WAKE_OUTBOX, None)
            raise
        return result, bool(conn.info.pop(WAKE_OUTBOX, False))

    result, wake = await runner.write(run)
    if wake:  # committed: this process's delivery loops send it now
        BELL.ring()
    return result


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
    if known is None:
        row = conn.execute(
            select(grants.c.client_id, users.c.username)
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(grants.c.id == grant_id)
        ).first()
        client_id, subject = (row.client_id, row.username) if row is not None else (None, None)
    else:
        client_id, subject = known.client_id, known.subject
    _ENQUEUE.run(
        conn,
        event_type=WebhookEventType.GRANT_REVOKED,
        payload=grant_revoked_payload(grant_id, client_id, subject, reason, now),
        created_at=now,
        next_attempt_at=now,
    )


def grant_revoked_payload(
    grant_id: str, client_id: str | None, subject: str | None, reason: RevocationCause, now: int
) -> str:
    """The `grant.revoked` event's payload (PostgreSQL's one-statement revocation,
    `baton.store.sql.native`, inserts it in its own statement)."""
    fields = {"grant_id": grant_id, "client_id": client_id, "subject": subject, "reason": reason}
    return _payload(WebhookEventType.GRANT_REVOKED, fields, now)


def security_event(conn: Connection, fields: dict[str, Any], now: int) -> None:
    """`reuse_detected` for a replayed refresh token or code, from the fields of its
    `security_events` row. Other kinds (a retry inside the leeway, say) are for the console's
    timeline, not an alarm: they send nothing."""
    if fields["kind"] not in REUSE_EVENT_KINDS:
        return
    sent = {k: v for k, v in fields.items() if k != "detail"}
    enqueue(conn, WebhookEventType.REUSE_DETECTED, sent, now)


# -- back-channel logout (OIDC Back-Channel Logout 1.0) -------------------------------------------


def is_oidc_grant(grant: GrantFacts) -> bool:
    """A grant an ID token was issued for: from a sign-in (`sid`, `sign_in`) or with `openid`."""
    return (
        grant.sid is not None or grant.sign_in is not None or "openid" in parse_scope(grant.scope)
    )


def backchannel_logout(
    conn: Connection, destination: str, client_id: str, subject: str, sid: str | None, now: int
) -> None:
    """One logout token for `client_id` (§2.4): its claims but `iss`, `iat`, `exp` (the sender's,
    at delivery) and the client's `sub` (derived from `subject` at delivery: a pairwise one
    needs the salt, which never reaches the database). `jti` is fixed here, so a retried
    delivery is the same token to the relying party's replay check."""
    claims: dict[str, Any] = {"jti": random_id("lgt_"), "aud": client_id, "subject": subject}
    if sid is not None:
        claims["sid"] = sid
    _ENQUEUE_TO.run(
        conn,
        event_type=BACKCHANNEL_LOGOUT_EVENT,
        payload=json.dumps(claims, separators=(",", ":")),
        created_at=now,
        next_attempt_at=now,
        destination=destination,
    )
    conn.info[WAKE_OUTBOX] = True


_ENQUEUE_TO = Prepared(
    insert(webhook_outbox).values(
        event_type=bindparam("event_type"),
        payload=bindparam("payload"),
        created_at=bindparam("created_at"),
        attempts=0,
        next_attempt_at=bindparam("next_attempt_at"),
        destination=bindparam("destination"),
    )
)

# The client's back-channel settings: one primary-key read, only on a revocation's path.
_BACKCHANNEL_OF = select(
    clients.c.id, clients.c.backchannel_logout_uri, clients.c.backchannel_logout_session_required
)


def logouts_for(
    conn: Connection, sessions: Iterable[tuple[str, str | None, str | None]], now: int
) -> list[str]:
    """A logout token for each distinct (client, subject, sid) of `sessions` whose client has a
    `backchannel_logout_uri`; returns the clients told. One read of the clients involved.

    §2.4: the token holds `sub`, `sid` or both; a client that registered
    `backchannel_logout_session_required` needs `sid` (§2.2), and gets no token without one."""
    wanted = {(client_id, subject, sid) for client_id, subject, sid in sessions if subject}
    if not wanted:
        return []
    ids = sorted({client_id for client_id, _subject, _sid in wanted})
    settings = {row.id: row for row in conn.execute(_BACKCHANNEL_OF.where(clients.c.id.in_(ids)))}
    told: list[str] = []
    for client_id, subject, sid in sorted(wanted, key=lambda w: (w[0], w[1], w[2] or "")):
        row = settings.get(client_id)
        if row is None or not row.backchannel_logout_uri:
            continue
        if sid is None and row.backchannel_logout_session_required:
            continue
        assert subject is not None
        backchannel_logout(conn, row.backchannel_logout_uri, client_id, subject, sid, now)
        told.append(client_id)
    return told


def grant_logout(conn: Connection, grant_id: str, now: int, known: GrantFacts | None) -> None:
    """The back-channel logout of a revoked grant (reuse detection, an administrator): nothing
    for a plain OAuth grant (no read at all when the caller knows its facts), else one read of
    its client, and a token if the client has a `backchannel_logout_uri`."""
    if known is None:
        row = conn.execute(
            select(
                grants.c.client_id, grants.c.scope, grants.c.sid, grants.c.sign_in, users.c.username
            )
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(grants.c.id == grant_id)
        ).first()
        if row is None:
            return
        oidc = row.sid is not None or row.sign_in is not None or "openid" in parse_scope(row.scope)
        client_id, subject, sid = row.client_id, row.username, row.sid
    else:
        oidc = is_oidc_grant(known)
        client_id, subject, sid = known.client_id, known.subject, known.sid
    if oidc and subject is not None:
        logouts_for(conn, [(client_id, subject, sid)], now)


def policy_notice(
    conn: Connection,
    destination: str,
    event: PolicyNoticeEvent,
    claims: dict[str, Any],
    now: int,
) -> None:
    """A notice of a change of a client's policy to its `notify_url` (issue 28): `claims` are
    the notice's own (`baton.server.endpoints.client_policy.notice_claims`); `jti` is fixed
    here, so a retried delivery is the same notice to the receiver's replay check."""
    payload = {"jti": random_id("pn_"), "event": event.value, **claims}
    _ENQUEUE_TO.run(
        conn,
        event_type=event,
        payload=json.dumps(payload, separators=(",", ":")),
        created_at=now,
        next_attempt_at=now,
        destination=destination,
    )
    conn.info[WAKE_OUTBOX] = True


def clients_with_notify_url(conn: Connection) -> int:
    """How many live clients have a `notify_url`: the server warns at start-up when it has
    them but cannot sign their notices (no key-encryption key)."""
    query = (
        select(clients.c.id)
        .where(clients.c.notify_url.is_not(None), clients.c.deleted_at.is_(None))
        .limit(1000)
    )
    return len(conn.execute(query).all())


class Bell:
    """Wakes this process's delivery loops when a back-channel logout has been committed.

    Rung from any thread (the SQLite runner commits on the loop, PostgreSQL's on the loop too,
    but a CLI or a test may write from elsewhere); a loop that was busy when it rang sees the
    count moved and does not wait. Other processes' rows are found by the loops' short poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.rung = 0

    def ring(self) -> None:
        with self._lock:
            self.rung += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float, seen: int) -> None:
        """Until the bell rings after `seen` (a `rung` read before the caller last looked at the
        outbox), or `timeout` seconds."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if self.rung != seen:
                return
            self._waiters.add(waiter)
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            with self._lock:
                self._waiters.discard(waiter)


BELL = Bell()


# -- delivery -------------------------------------------------------------------------------------


def _due(now: int, oldest: int, webhooks: bool) -> list[ColumnElement[bool]]:
    """Undelivered, due, not too old; without a configured webhook only the back-channel rows
    (the webhook's wait for a URL, or their maximum age)."""
    ob = webhook_outbox
    where = [ob.c.delivered_at.is_(None), ob.c.next_attempt_at <= now, ob.c.created_at >= oldest]
    if not webhooks:
        where.append(ob.c.destination.is_not(None))
    return where


def any_due(conn: Connection, now: int, oldest: int, webhooks: bool = True) -> bool:
    """A read first, so an idle outbox costs no write transaction (SQLite has one writer)."""
    ob = webhook_outbox
    found = conn.execute(select(ob.c.id).where(*_due(now, oldest, webhooks)).limit(1)).first()
    return found is not None


def claim_due(
    conn: Connection, now: int, lease_until: int, oldest: int, limit: int, webhooks: bool = True
) -> list[Delivery]:
    """Leases the due rows to the caller until `lease_until`.

    The conditional UPDATE is the lease: on PostgreSQL a concurrent claimer waits for our row
    lock and then no longer finds the row due; on SQLite writers are serialized. A process that
    dies holding a lease loses it when `lease_until` passes, and the row is sent again (at least
    once). The attempt is counted at the claim, so a crash mid-send counts too.
    """
    ob = webhook_outbox
    due = conn.execute(
        select(
            ob.c.id, ob.c.event_type, ob.c.payload, ob.c.attempts, ob.c.created_at, ob.c.destination
        )
        .where(*_due(now, oldest, webhooks))
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
                Delivery(
                    row.id,
                    row.event_type,
                    row.payload,
                    row.attempts + 1,
                    row.created_at,
                    row.destination,
                )
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
