"""`httpx.Auth` for sync and async clients: attach, refresh ahead of expiry, refresh on 401.

The pair is read from the store on every request (a file read, a row, a Redis GET), never kept
in memory: once a rotation is stored, no request of any thread or process carries the old
access token again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Generator, Iterable

import httpx

from baton.client.refresher import Refresher
from baton.client.tokens import TokenPair

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
      sends the request once more.
    """

    requires_request_body = True  # the body must be replayable for the one retry

    def __init__(self, refresher: Refresher, margin: float = 30.0) -> None:
        self.refresher = refresher
        self.margin = margin

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
            yield request

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
            yield request


def _attach(request: httpx.Request, pair: TokenPair) -> None:
    request.headers["Authorization"] = f"Bearer {pair.access_token}"
