"""Delivering the webhook outbox: signed POSTs, retried with backoff, at least once.

Every server process runs one delivery loop. It leases the due rows (`Outbox`), so two
processes never send one row at the same time, while a row leased by a process that died is sent
again once the lease runs out. A failed delivery (no answer, a timeout, any status but 2xx) is
tried again after an exponential backoff with jitter, capped, until the event is older than the
maximum age; then it is given up and its last error kept in the row.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import httpx

from baton.core.clock import Clock
from baton.core.policy import DAY
from baton.logs import get_logger
from baton.server.observability.metrics import Metrics
from baton.store.base import NEVER, Delivery
from baton.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign

log = get_logger("baton.webhooks")


class Outbox(Protocol):
    """What delivery asks of the store: the webhook outbox's rows, leased and settled.

    Events are written to the outbox by the transactions that decide them; the store's
    `baton.store.sql.outbox` has the statements behind these methods."""

    async def deliveries_due(self, now: int, oldest: int) -> bool:
        """Whether a row created at `oldest` or later is due (a read: an idle outbox costs no
        write transaction)."""
        ...

    async def claim_deliveries(
        self, now: int, lease_until: int, oldest: int, limit: int
    ) -> list[Delivery]:
        """Leases up to `limit` due rows to the caller until `lease_until`; a row leased by a
        process that died is due again once its lease has passed (at least once)."""
        ...

    async def mark_delivered(self, delivery_id: int, now: int) -> None: ...

    async def mark_failed(self, delivery_id: int, next_attempt_at: int, error: str) -> None:
        """Records the error and when to try again (`NEVER`: given up)."""
        ...


@dataclass(frozen=True)
class WebhookOptions:
    url: str = field(repr=False)  # may hold a credential in its query: never logged
    secret: str = field(repr=False)
    timeout: float = 10.0  # seconds for one POST
    backoff_base: int = 5  # seconds before the second attempt; doubled after each failure
    backoff_cap: int = 3600  # the longest wait between attempts
    max_age: int = 3 * DAY  # after this an undelivered event is given up
    poll_interval: float = 1.0  # seconds between looks at the outbox when it is idle
    lease: int = 60  # seconds a claimed row is reserved to its claimer (> timeout)
    batch: int = 20  # rows claimed, and sent concurrently, at a time


def backoff(options: WebhookOptions, attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failure: exponential, capped, jittered into its
    upper half (receivers recovering from an outage are not hit by every sender at once)."""
    delay = int(min(options.backoff_cap, options.backoff_base * 2 ** min(attempts - 1, 32)))
    return max(1, delay - secrets.randbelow(delay // 2 + 1))


class WebhookSender:
    def __init__(
        self,
        options: WebhookOptions,
        store: Outbox,
        clock: Clock,
        metrics: Metrics | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.http = http or httpx.AsyncClient(follow_redirects=False)

    async def run_forever(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:  # the database is away, say: look again later
                log.exception("webhook delivery round failed; will retry")
                sent = 0
            if sent == 0:
                await anyio.sleep(self.options.poll_interval)

    async def deliver_due(self) -> int:
        """Claims the due rows and sends them; returns how many were claimed."""
        options, now = self.options, self.clock.now()
        oldest = now - options.max_age
        if not await self.store.deliveries_due(now, oldest):
            return 0
        claimed = await self.store.claim_deliveries(now, now + options.lease, oldest, options.batch)
        async with anyio.create_task_group() as tasks:
            for delivery in claimed:
                tasks.start_soon(self._deliver, delivery)
        return len(claimed)

    async def _deliver(self, delivery: Delivery) -> None:
        body = delivery.payload.encode()
        event_id = _event_id(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "baton-webhooks",
            SIGNATURE_HEADER: sign(self.options.secret, body, self.clock.now()),
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: delivery.event_type,
        }
        error: str | None
        try:
            response = await self.http.post(
                self.options.url, content=body, headers=headers, timeout=self.options.timeout
            )
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            # The class only: an httpx message may quote the URL, which may hold a credential.
            error = type(exc).__name__
        now = self.clock.now()
        fields = {"event_id": event_id, "event_type": delivery.event_type}
        if error is None:
            await self.store.mark_delivered(delivery.id, now)
            self._count("delivered")
            log.info("webhook delivered", attempts=delivery.attempts, **fields)
            return
        next_at = now + backoff(self.options, delivery.attempts)
        if next_at > delivery.created_at + self.options.max_age:
            next_at, outcome = NEVER, "gave_up"
            error = f"gave up after {delivery.attempts} attempts: {error}"
        else:
            outcome = "failed"
        await self.store.mark_failed(delivery.id, next_at, error)
        self._count(outcome)
        log.warning(
            "webhook delivery failed",
            attempts=delivery.attempts,
            error=error,
            retry_at=None if next_at == NEVER else next_at,
            **fields,
        )

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()

    async def close(self) -> None:
        await self.http.aclose()


def _event_id(delivery: Delivery) -> str:
    event_id = json.loads(delivery.payload).get("id")
    return str(event_id) if event_id else f"outbox_{delivery.id}"
