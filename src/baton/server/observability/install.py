"""What `create_app` adds for observability: the metrics, /metrics, and the webhook sender.

Kept apart from `baton.server.app` so the app factory gains three lines, not a subsystem.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from anyio.abc import TaskGroup
from prometheus_client import multiprocess
from starlette.routing import BaseRoute, Route

from baton.config import Settings
from baton.core.clock import Clock
from baton.logs import get_logger
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
from baton.store.sql.outbox import clients_with_notify_url

log = get_logger("baton.webhooks")


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
            # The integrator chooses a notify_url: private addresses only in development.
            allow_private=settings.client_documents_allow_private,
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
        if policy_notices is None:
            tasks.start_soon(self.warn_unsigned_notices)
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

    async def warn_unsigned_notices(self) -> None:
        """One warning at start-up when clients have a `notify_url` but this server cannot
        sign their notices (no key-encryption key, `BATON_KEY_ENCRYPTION_KEY`): their notices
        wait in the outbox, undelivered, until it can (and are given up past the maximum age).
        Only with an SQL store (`inspect`); a failure to look is logged, never raised."""
        inspect: Callable[[Callable[[Any], int]], Any] | None = getattr(self.store, "inspect", None)
        if inspect is None:
            return
        try:
            waiting = await inspect(clients_with_notify_url)
        except Exception:
            log.exception("could not count the clients with a notify_url")
            return
        if waiting:
            log.warning(
                "clients have a notify_url but policy notices cannot be signed without a "
                "key-encryption key (BATON_KEY_ENCRYPTION_KEY): they are not sent",
                clients=waiting,
            )

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.close()
        if multiprocess_mode():
            # This worker's live gauges (pool use) leave the sums.
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
