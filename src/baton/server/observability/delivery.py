"""Delivering the webhook outbox: signed POSTs, retried with backoff, at least once.

Every server process runs one delivery loop. It leases the due rows (`Outbox`), so two
processes never send one row at the same time, while a row leased by a process that died is sent
again once the lease runs out. A failed delivery (no answer, a timeout, any status but 2xx) is
tried again after an exponential backoff with jitter, capped, until the event is older than the
maximum age; then it is given up and its last error kept in the row.

The same loop delivers back-channel logout tokens (OIDC Back-Channel Logout 1.0 §2.5): rows with
a `destination` (a client's `backchannel_logout_uri`), POSTed as a form with `logout_token`,
signed here at the moment of sending (`LogoutTokens`); the relying party answers 200 (or 204)
when it logged the session out, anything else is retried like a webhook. The loop runs whether or
not a webhook URL is configured (without one it leases only back-channel rows), wakes as soon as
this process commits a logout (`outbox.BELL`: a reuse detected by a worker is sent by that
worker's loop at once), and finds those of other processes (`baton grants revoke`) and the
retries coming due by its poll (`poll_interval`).

Policy notices (issue 28) are delivered the same way, to the client's `notify_url`: rows whose
`event_type` is a `PolicyNoticeEvent`, signed at the moment of sending with the server's key
(`PolicyNotices`: a JWT of `typ` `baton-policy-notice+jwt`, verifiable with the `jwks_uri`) and
POSTed as `application/jwt`; any 2xx is delivered, anything else is retried like a webhook.
The integrator chooses that URL, so it is POSTed to through `baton.server.runtime.fetching.post`
(server-side request forgery): every address its name resolves to must be public (private and
loopback only under `--client-documents-allow-private`, for development), the connection goes
to the address checked, no redirect is followed; a refused address fails the row with its
reason, and no request is made.

Every POST (webhook, back-channel logout, notice) has a total deadline, `timeout` (shorter than
the lease), and only the answer's status is read, never its body: a receiver trickling an
endless 200 can neither hold the round past the deadline nor make the process buffer what it
sends. Each row is delivered by a task of its own that settles it whatever happens (an
unexpected error fails the row, logged), so one row never cancels the others of its round.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from baton.core.clock import Clock
from baton.core.policy import DAY
from baton.core.vocabulary import PolicyNoticeEvent
from baton.logs import get_logger
from baton.server.observability.metrics import Metrics
from baton.server.runtime import fetching
from baton.store.base import NEVER, Delivery
from baton.store.sql.outbox import BELL
from baton.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    import httpx

log = get_logger("baton.webhooks")


class Outbox(Protocol):
    """What delivery asks of the store: the webhook outbox's rows, leased and settled.

    Events are written to the outbox by the transactions that decide them; the store's
    `baton.store.sql.outbox` has the statements behind these methods."""

    async def deliveries_due(self, now: int, oldest: int, webhooks: bool = True) -> bool:
        """Whether a row created at `oldest` or later is due (a read: an idle outbox costs no
        write transaction); without `webhooks` only back-channel logout rows count."""
        ...

    async def claim_deliveries(
        self, now: int, lease_until: int, oldest: int, limit: int, webhooks: bool = True
    ) -> list[Delivery]:
        """Leases up to `limit` due rows to the caller until `lease_until`; a row leased by a
        process that died is due again once its lease has passed (at least once). Without
        `webhooks`, only back-channel logout rows."""
        ...

    async def mark_delivered(self, delivery_id: int, now: int) -> None: ...

    async def mark_failed(self, delivery_id: int, next_attempt_at: int, error: str) -> None:
        """Records the error and when to try again (`NEVER`: given up)."""
        ...


class LogoutTokens(Protocol):
    """Signs a back-channel logout token from its stored claims at `now`; None when it cannot be
    signed now (no key of the client's algorithm yet, OpenID Connect off): tried again later."""

    async def __call__(self, stored: dict[str, Any], now: int) -> str | None: ...


class PolicyNotices(Protocol):
    """Signs a policy notice from its stored claims at `now`; None when it cannot be signed now
    (no signing key yet): tried again later."""

    async def __call__(self, stored: dict[str, Any], now: int) -> str | None: ...


NOTICE_EVENTS = frozenset(PolicyNoticeEvent)


# Back-Channel Logout 1.0 §2.8: "If the logout succeeded, the RP MUST respond with HTTP 200 OK";
# 204 is what many relying parties send, and means the same.
LOGGED_OUT = frozenset({200, 204})


@dataclass(frozen=True)
class WebhookOptions:
    # None: no webhook configured (the loop then delivers back-channel logouts only).
    url: str | None = field(default=None, repr=False)  # may hold a credential: never logged
    secret: str | None = field(default=None, repr=False)
    timeout: float = 10.0  # seconds for one POST, all of it (< lease)
    backoff_base: int = 5  # seconds before the second attempt; doubled after each failure
    backoff_cap: int = 3600  # the longest wait between attempts
    max_age: int = 3 * DAY  # after this an undelivered event is given up
    poll_interval: float = 1.0  # seconds between looks at the outbox when it is idle
    lease: int = 60  # seconds a claimed row is reserved to its claimer (> timeout)
    batch: int = 20  # rows claimed, and sent concurrently, at a time
    # Notices may go to private and loopback addresses (`--client-documents-allow-private`).
    allow_private: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.timeout < self.lease:
            raise ValueError("a POST's deadline must be shorter than a row's lease")


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
        logout_tokens: LogoutTokens | None = None,
        policy_notices: PolicyNotices | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.options = options
        self.ssl_context = ssl_context  # for notices' TLS (tests: their own CA)
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self._http = http
        self.logout_tokens = logout_tokens
        self.policy_notices = policy_notices
        self.webhooks = options.url is not None and options.secret is not None

    @property
    def http(self) -> httpx.AsyncClient:
        """The client of webhooks and back-channel logouts, made on the first delivery: httpx
        is not imported by a worker that delivers nothing."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def run_forever(self) -> None:
        while True:
            seen = BELL.rung  # before the look: a logout committed after it is not waited out
            try:
                sent = await self.deliver_due()
            except Exception:  # the database is away, say: look again later
                log.exception("webhook delivery round failed; will retry")
                sent = 0
            if sent == 0:
                await BELL.wait(self.options.poll_interval, seen)

    async def deliver_due(self) -> int:
        """Claims the due rows and sends them; returns how many were claimed."""
        options, now, webhooks = self.options, self.clock.now(), self.webhooks
        oldest = now - options.max_age
        if not await self.store.deliveries_due(now, oldest, webhooks):
            return 0
        claimed = await self.store.claim_deliveries(
            now, now + options.lease, oldest, options.batch, webhooks
        )
        async with anyio.create_task_group() as tasks:
            for delivery in claimed:
                tasks.start_soon(self._guarded, delivery)
        return len(claimed)

    async def _guarded(self, delivery: Delivery) -> None:
        """Delivers one row, whatever happens to it: an unexpected error is logged and the row
        failed with its retry, never raised into the round, where it would cancel the rows
        sent beside it (sent again later: twice)."""
        try:
            if delivery.destination is not None and delivery.event_type in NOTICE_EVENTS:
                await self._deliver_notice(delivery, delivery.destination)
            elif delivery.destination is not None:
                await self._deliver_logout(delivery, delivery.destination)
            else:
                await self._deliver(delivery)
        except Exception as exc:
            log.exception("delivery failed unexpectedly", delivery_id=delivery.id)
            try:
                await self._mark_failed(delivery, f"internal error ({type(exc).__name__})")
            except Exception:  # the database is away: the lease runs out, the row is sent again
                log.exception("a failed delivery could not be recorded", delivery_id=delivery.id)

    async def _mark_failed(self, delivery: Delivery, failure: str) -> tuple[int, str]:
        """Fails the row with its retry (`NEVER` past the maximum age); when it is tried again
        and the error as recorded."""
        next_at = self.clock.now() + backoff(self.options, delivery.attempts)
        if next_at > delivery.created_at + self.options.max_age:
            next_at = NEVER
            failure = f"gave up after {delivery.attempts} attempts: {failure}"
        await self.store.mark_failed(delivery.id, next_at, failure)
        return next_at, failure

    async def _status(self, url: str, headers: Mapping[str, str], **body: Any) -> int:
        """POSTs to a URL the operator configured or a relying party registered (webhooks,
        back-channel logouts) within `timeout` in all, and returns the status without reading
        the body (`httpx.TimeoutException` past the deadline)."""
        import httpx  # loaded with the client (`http`), not at start-up

        try:
            with anyio.fail_after(self.options.timeout):
                async with self.http.stream(
                    "POST", url, headers=headers, timeout=self.options.timeout, **body
                ) as response:
                    return response.status_code  # closed unread on the way out
        except TimeoutError:
            raise httpx.TimeoutException("no answer within the deadline") from None

    async def _deliver_logout(self, delivery: Delivery, destination: str) -> None:
        """Back-Channel Logout 1.0 §2.5: `POST` of `logout_token` as a form, to the client's
        `backchannel_logout_uri`; the token is signed now, never stored signed."""
        import httpx  # loaded with the client (`http`), not at start-up

        stored = json.loads(delivery.payload)
        fields = {"client_id": stored.get("aud"), "jti": stored.get("jti")}
        failure: str | None
        token = None
        if self.logout_tokens is not None:
            token = await self.logout_tokens(stored, self.clock.now())
        if token is None:
            failure = "the logout token cannot be signed (OpenID Connect off, or no key yet)"
        else:
            try:
                status = await self._status(
                    destination,
                    {"User-Agent": "baton-backchannel-logout"},
                    data={"logout_token": token},
                )
                failure = None if status in LOGGED_OUT else f"HTTP {status}"
            except httpx.HTTPError as exc:
                failure = type(exc).__name__  # never the message: it may quote the URL
        await self._settle(delivery, failure, "back-channel logout", fields)

    async def _deliver_notice(self, delivery: Delivery, destination: str) -> None:
        """A policy notice (issue 28): `POST` of the signed notice as `application/jwt` to the
        client's `notify_url`; signed now, never stored signed. Any 2xx: delivered."""
        stored = json.loads(delivery.payload)
        fields = {
            "client_id": stored.get("client_id"),
            "jti": stored.get("jti"),
            # Not `event`: structlog's first argument (the message) is called that.
            "event_type": delivery.event_type,
        }
        failure: str | None
        token = None
        if self.policy_notices is not None:
            token = await self.policy_notices(stored, self.clock.now())
        if token is None:
            failure = "the policy notice cannot be signed (no signing key yet)"
        else:
            try:
                status = await fetching.post(
                    destination,
                    token.encode(),
                    content_type="application/jwt",
                    headers=[(EVENT_TYPE_HEADER, delivery.event_type)],
                    allow_private=self.options.allow_private,
                    timeout=self.options.timeout,
                    ssl_context=self.ssl_context,
                    user_agent="baton-policy-notices",
                )
                failure = None if 200 <= status < 300 else f"HTTP {status}"
            except fetching.FetchError as exc:
                # The reason names addresses, never the URL's path or query (which may hold
                # a credential): for the operator's log and the row, not for the integrator.
                failure = exc.reason
        await self._settle(delivery, failure, "policy notice", fields)

    async def _settle(
        self, delivery: Delivery, failure: str | None, what: str, fields: dict[str, Any]
    ) -> None:
        """Marks a delivery to a client's own URL delivered, or failed with its retry (given up
        past the maximum age), and logs it (never the URL)."""
        if failure is None:
            await self.store.mark_delivered(delivery.id, self.clock.now())
            log.info(f"{what} delivered", attempts=delivery.attempts, **fields)
            return
        next_at, failure = await self._mark_failed(delivery, failure)
        log.warning(
            f"{what} failed",
            attempts=delivery.attempts,
            error=failure,
            retry_at=None if next_at == NEVER else next_at,
            **fields,
        )

    async def _deliver(self, delivery: Delivery) -> None:
        import httpx  # loaded with the client (`http`), not at start-up

        assert self.options.url is not None and self.options.secret is not None  # `webhooks`
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
            status = await self._status(self.options.url, headers, content=body)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            # The class only: an httpx message may quote the URL, which may hold a credential.
            error = type(exc).__name__
        fields = {"event_id": event_id, "event_type": delivery.event_type}
        if error is None:
            await self.store.mark_delivered(delivery.id, self.clock.now())
            self._count("delivered")
            log.info("webhook delivered", attempts=delivery.attempts, **fields)
            return
        next_at, error = await self._mark_failed(delivery, error)
        self._count("gave_up" if next_at == NEVER else "failed")
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
        if self._http is not None:
            await self._http.aclose()


def _event_id(delivery: Delivery) -> str:
    event_id = json.loads(delivery.payload).get("id")
    return str(event_id) if event_id else f"outbox_{delivery.id}"
