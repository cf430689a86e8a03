"""`httpx.Auth` for sync and async clients: attach, refresh ahead of expiry, refresh on 401.

The pair is read from the store on every request (a file read, a row, a Redis GET), never kept
in memory: once a rotation is stored, no request of any thread or process carries the old
access token again. An API answer saying the token was superseded (`Baton-Token-Superseded`,
issue 28) is handed to the refresher's `Hooks.on_superseded`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Generator, Iterable

import anyio.to_thread
import httpx

from baton.client.refresher import Refresher, superseded
from baton.client.superseded import HEADER, SupersededEvent, SupersededWatch
from baton.client.tokens import TokenPair

Superseded = Callable[[SupersededEvent], None]

# RFC 6750 §3: `WWW-Authenticate: Bearer realm="x", error="invalid_token", ...`
_BEARER_ERROR = re.compile(r'(?:^|[\s,])error\s*=\s*"?([A-Za-z_]+)"?', re.IGNORECASE)


def bearer_error(status: int, expected: int, code: str, challenges: Iterable[str]) -> bool:
    """An `expected` status whose Bearer challenge names the error `code` (RFC 6750 §3)."""
    if status != expected:
        return False
    return any(
        challenge.strip().lower().startswith("bearer")
        and any(found.group(1).lower() == code for found in _BEARER_ERROR.finditer(challenge))
        for challenge in challenges
    )


def is_invalid_token(status: int, challenges: Iterable[str]) -> bool:
    """A 401 whose Bearer challenge says `error="invalid_token"` (RFC 6750 §3.1)."""
    return bearer_error(status, 401, "invalid_token", challenges)


class BearerAuth(httpx.Auth):
    """Attaches the stored access token to each request.

    - refreshes first when the token expires within `margin` seconds;
    - on a 401 with `error="invalid_token"`, refreshes (unless another caller already did) and
      sends the request once more;
    - on an answer with `Baton-Token-Superseded`, tells `on_superseded` (once per token).
    """

    requires_request_body = True  # the body must be replayable for the one retry

    def __init__(self, refresher: Refresher, margin: float = 30.0) -> None:
        self.refresher = refresher
        self.margin = margin
        self._watch = SupersededWatch()

    def on_superseded(self, callback: Superseded) -> Superseded:
        """Registers `callback` as the refresher's `Hooks.on_superseded` (usable as a
        decorator): called with a `SupersededEvent` when an API says the access token a request
        carried was superseded by a rotation this app did not see."""
        self.refresher.hooks.on_superseded = callback
        return callback

    def _superseded(self, values: list[str], used: TokenPair) -> None:
        superseded(self.refresher.hooks, self._watch.event(values, used, self.refresher.store.load))

    def _usable(self, pair: TokenPair) -> bool:
        return pair.exchanging_since is None and not pair.expires_within(
            self.margin, self.refresher.clock()
        )

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        pair = self.refresher.pair()
        if not self._usable(pair):
            pair = self.refresher.refresh(pair, self.margin)
        _attach(request, pair)
        response = yield request
        if is_invalid_token(response.status_code, response.headers.get_list("www-authenticate")):
            response.read()
            pair = self.refresher.refresh(pair, self.margin)
            _attach(request, pair)
            response = yield request
        if HEADER in response.headers:
            self._superseded(response.headers.get_list(HEADER), pair)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        pair = await self.refresher.apair()
        if not self._usable(pair):
            pair = await self.refresher.arefresh(pair, self.margin)
        _attach(request, pair)
        response = yield request
        if is_invalid_token(response.status_code, response.headers.get_list("www-authenticate")):
            await response.aread()
            pair = await self.refresher.arefresh(pair, self.margin)
            _attach(request, pair)
            response = yield request
        if HEADER in response.headers:  # reads the store: off the event loop
            await anyio.to_thread.run_sync(
                self._superseded, response.headers.get_list(HEADER), pair
            )


def _attach(request: httpx.Request, pair: TokenPair) -> None:
    request.headers["Authorization"] = f"Bearer {pair.access_token}"
