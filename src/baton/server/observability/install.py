"""What `create_app` adds for observability: the metrics, /metrics, and the webhook sender.

Kept apart from `baton.server.app` so the app factory gains three lines, not a subsystem.
"""

from __future__ import annotations

import os
from typing import Protocol

from anyio.abc import TaskGroup
from prometheus_client import multiprocess
from starlette.routing import BaseRoute, Route

from baton.config import Settings
from baton.core.clock import Clock
from baton.server.observability.delivery import (
    LogoutTokens,
    Outbox,
    PolicyNotices,
    WebhookOptions,
    WebhookSender,
)
from baton.server.observability.metrics import (
    Metrics,
    Stats,
    metrics_endpoint,
    multiprocess_mode,
    sample_pool_forever,
)


class ObservedStore(Outbox, Stats, Protocol):
    """What observability asks of the store: the webhook outbox and the metrics' figures."""


class Observability:
    def __init__(self, settings: Settings, store: ObservedStore, clock: Clock) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.sender: WebhookSender | None = None
        if settings.webhook_url and not settings.webhook_secret:
            raise ValueError("webhooks need a signing secret (BATON_WEBHOOK_SECRET)")
        # Without a webhook URL the options still time the back-channel logouts' retries.
        self.options = WebhookOptions(
            url=settings.webhook_url or None,
            secret=settings.webhook_secret if settings.webhook_url else None,
            backoff_base=settings.webhook_backoff_base,
            backoff_cap=settings.webhook_backoff_cap,
            max_age=settings.webhook_max_age,
            poll_interval=settings.webhook_poll_interval,
        )
        self.clock = clock
        self.store = store

    def routes(self) -> list[BaseRoute]:
        """/metrics when it is enabled: with a bearer token, or public by choice (else 404)."""
        token, public = self.settings.metrics_token, self.settings.metrics_public
        if token is None and not public:
            return []
        return [Route("/metrics", metrics_endpoint(token), methods=["GET"])]

    def start(
        self,
        tasks: TaskGroup,
        logout_tokens: LogoutTokens | None = None,
        policy_notices: PolicyNotices | None = None,
    ) -> None:
        """The metrics' sampling and the outbox's delivery loop: it runs with a webhook URL, and
        with signing keys (`logout_tokens`, `policy_notices`) even without one, for back-channel
        logouts and clients' policy notices."""
        tasks.start_soon(sample_pool_forever, self.metrics, self.store)
        if self.options.url is not None or logout_tokens or policy_notices:
            self.sender = WebhookSender(
                self.options,
                self.store,
                self.clock,
                self.metrics,
                logout_tokens=logout_tokens,
                policy_notices=policy_notices,
            )
            tasks.start_soon(self.sender.run_forever)

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.close()
        if multiprocess_mode():
            # This worker's live gauges (pool use) leave the sums.
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
