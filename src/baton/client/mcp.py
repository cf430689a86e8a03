"""`baton.client` for MCP clients built with the `mcp` SDK: its rotation guarantees on their HTTP.

`MCPAuth` is the `httpx2.Auth` of the MCP client's `httpx2.AsyncClient` (the streamable HTTP
transport takes it as `http_client=`). It reads the pair from a Baton `TokenStore` on every
request and refreshes through Baton's `Refresher`, so an MCP client gets what every other client
of the SDK gets (docs/sdk.md):

- **persist first**: a new pair is stored before any request carries it;
- **single flight**: one refresh at a time across tasks, threads and processes sharing the store
  (several MCP client processes on one `FileStore`), the others use the pair the winner stored;
- **lost responses recovered** by retrying the same refresh token inside the server's leeway,
  and never after it: the app itself never triggers a reuse detection;
- **a restart refreshes**: the stored pair carries its expiry, so a process that starts with an
  expired access token refreshes it with the stored refresh token. (The SDK's own
  `OAuthClientProvider` forgets the expiry across a restart, sends the expired token, and answers
  the 401 with a whole new interactive authorization.)

Only when there is no pair, the grant has ended (`ReauthorizationRequired`: revoked, expired, a
lost response past the leeway), or the MCP server asks for more scope (a 403
`insufficient_scope`: the SDK's step-up), does `MCPAuth` hand the request to a *fresh*, unmodified
`OAuthClientProvider` for the interactive part: discovery (RFC 9728, RFC 8414), registration
(client ID metadata document or dynamic registration, when no client is known), PKCE, `state`,
`iss` and the code exchange. That provider is given a storage that never shows it a token (so it
can neither send a stale access token nor present a refresh token: every refresh is Baton's) and
that writes the pair it obtains into the store before it uses it; it is discarded afterwards.

This module is the only one of `baton.client` that imports `mcp` (the `mcp` extra).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from baton.client.auth import is_invalid_token
from baton.client.endpoint import AuthMethod
from baton.client.errors import ClientError, ReauthorizationRequired
from baton.client.refresher import Refresher
from baton.client.stores import (
    FileStore,
    TokenStore,
    _atomic_write,
    _check_private_directory,
    _read_private,
    store_pair,
)
from baton.client.tokens import TokenPair

__all__ = ["MCPAuth", "is_insufficient_scope", "pair_of", "token_of"]

# RFC 7591 §2 token_endpoint_auth_method values Baton's refresher can apply to a refresh.
_AUTH_METHODS: dict[str | None, AuthMethod] = {
    None: "none",  # absent: the SDK sends no secret either
    "none": "none",
    "client_secret_basic": "client_secret_basic",
    "client_secret_post": "client_secret_post",
}


def pair_of(token: OAuthToken, obtained_at: float) -> TokenPair:
    """The SDK's token response as Baton's stored pair (lifetimes count from `obtained_at`)."""
    return TokenPair.from_response(token.model_dump(exclude_none=True), obtained_at)


def token_of(pair: TokenPair, now: float) -> OAuthToken:
    """Baton's stored pair as the SDK's token model, `expires_in` counted from `now`."""
    expires_in = None if pair.expires_at is None else max(0, int(pair.expires_at - now))
    return OAuthToken(
        access_token=pair.access_token,
        expires_in=expires_in,
        scope=pair.scope,
        refresh_token=pair.refresh_token,
    )


def _root_issuer(issuer: str) -> str:
    """`scheme://authority/` as `scheme://authority`: pydantic renders a path-less URL (the
    protected resource metadata's `authorization_servers`, recorded on the SDK's client
    information) with a trailing slash; RFC 8414 §3.3 compares issuers as strings, and a root
    issuer with and without its slash name the same server (the SDK's `issuers_match`)."""
    parts = urlsplit(issuer)
    if issuer == f"{parts.scheme}://{parts.netloc}/":
        return issuer[:-1]
    return issuer


class _ClientRecord:
    """The client registration the SDK uses and Baton's refresher needs (`client_id`, its secret
    and authentication method, the issuer it is bound to): given (pre-registered), kept in a 0600
    JSON file (a registration made by the SDK must outlive the process: the stored refresh token
    belongs to it), or in memory."""

    def __init__(self, given: OAuthClientInformationFull | None, path: Path | None) -> None:
        self._info = given
        self.path = path

    def load(self) -> OAuthClientInformationFull | None:
        # Read every time: another process sharing the store may have registered since.
        if self.path is not None:
            try:
                return OAuthClientInformationFull.model_validate_json(_read_private(self.path))
            except FileNotFoundError:
                pass
        return self._info

    def save(self, info: OAuthClientInformationFull) -> None:
        # The registration may hold a client secret: mode 0600, in a private directory, atomic.
        if self.path is not None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private_directory(self.path.parent)
            _atomic_write(self.path, info.model_dump_json(exclude_none=True).encode("utf-8"))
        self._info = info


class _HandOverStorage:
    """The SDK's `TokenStorage` for the one interactive authorization `MCPAuth` hands over.

    `get_tokens` is always None: the provider then neither attaches a stored (perhaps expired)
    access token nor refreshes (`OAuthContext.can_refresh_token` needs a refresh token), so no
    refresh token ever leaves through the SDK. `set_tokens` writes the pair it obtained into the
    Baton store, under the store's lock, before the provider uses it (it calls `set_tokens`
    before it retries the request)."""

    def __init__(self, owner: MCPAuth) -> None:
        self.owner = owner

    async def get_tokens(self) -> OAuthToken | None:
        return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        pair = pair_of(tokens, self.owner.clock())
        await anyio.to_thread.run_sync(store_pair, self.owner.store, pair)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return await anyio.to_thread.run_sync(self.owner.client_record.load)

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await anyio.to_thread.run_sync(self.owner.client_record.save, client_info)


class MCPAuth(httpx2.Auth):
    """Rotation-safe OAuth for an MCP client: `httpx2.AsyncClient(auth=MCPAuth(...))`.

    `server_url`, `client_metadata`, `redirect_handler`, `callback_handler`,
    `client_metadata_url` and `validate_resource_url` are the `OAuthClientProvider` arguments of
    the same names, used for interactive authorizations only. `store` holds the pair (a
    `FileStore` shared by several MCP client processes on a host, a `RedisStore` across hosts).

    The client registration: `client_info` for a pre-registered client (e.g.
    `OAuthClientInformationFull(client_id=..., redirect_uris=[...],
    token_endpoint_auth_method="none")`); otherwise the one the SDK makes is kept in
    `client_info_path` (default: beside a `FileStore`, `tokens.json.client`; in memory for other
    stores, so that a restart must authorize again).

    `issuer`: the authorization server whose token endpoint refreshes the pair (its RFC 8414
    metadata is read, with Baton's leeway). Default: the issuer the SDK recorded on the
    registration it made; a pre-registered client needs it. A refresh token is only ever sent
    to this server, never to one an MCP server's metadata names later.

    `margin`: seconds before expiry a request refreshes first. `refresher_options` go to
    `Refresher.discover` (`leeway`, `hooks`, `http`, `timeout`, `clock`, ...).

    Without `redirect_handler` and `callback_handler`, a request that needs an authorization
    raises `ReauthorizationRequired` instead of starting one.
    """

    requires_request_body = True  # the body must be replayable for the one retry after a 401

    def __init__(
        self,
        server_url: str,
        client_metadata: OAuthClientMetadata,
        store: TokenStore,
        *,
        redirect_handler: Callable[[str], Awaitable[None]] | None = None,
        callback_handler: Callable[[], Awaitable[AuthorizationCodeResult]] | None = None,
        client_metadata_url: str | None = None,
        validate_resource_url: Callable[[str, str | None], Awaitable[None]] | None = None,
        client_info: OAuthClientInformationFull | None = None,
        client_info_path: str | os.PathLike[str] | None = None,
        issuer: str | None = None,
        margin: float = 30.0,
        **refresher_options: Any,
    ) -> None:
        self.server_url = server_url
        self.client_metadata = client_metadata
        self.store = store
        self.redirect_handler = redirect_handler
        self.callback_handler = callback_handler
        self.client_metadata_url = client_metadata_url
        self.validate_resource_url = validate_resource_url
        if client_info_path is None and client_info is None and isinstance(store, FileStore):
            client_info_path = store.path.with_name(store.path.name + ".client")
        self.client_record = _ClientRecord(
            client_info, None if client_info_path is None else Path(client_info_path).expanduser()
        )
        self.issuer = issuer
        self.margin = margin
        self.refresher_options = refresher_options
        self.clock: Callable[[], float] = refresher_options.get("clock", time.time)
        self._refresher: Refresher | None = None
        self._refresher_key: tuple[str, str, str | None, str | None] | None = None
        self._refresher_lock = threading.Lock()
        self._authorizing = anyio.Lock()  # one interactive authorization at a time per process

    # -- the refresher ---------------------------------------------------------------------------

    def refresher(self) -> Refresher:
        """Baton's refresher for the current registration (built once, after reading the
        issuer's metadata; built again if the SDK registered another client). Blocking I/O: call
        it from a worker thread in async code."""
        info = self.client_record.load()
        if info is None or not info.client_id:
            raise ReauthorizationRequired("no client registration is stored: authorize first")
        issuer = self._issuer_of(info)
        method = info.token_endpoint_auth_method
        if method not in _AUTH_METHODS:
            raise ClientError(
                f"the client registration uses token_endpoint_auth_method {method!r}, which"
                " baton.client cannot apply to a refresh"
            )
        key = (issuer, info.client_id, info.client_secret, method)
        with self._refresher_lock:
            if self._refresher is None or self._refresher_key != key:
                refresher = Refresher.discover(
                    issuer, info.client_id, info.client_secret, self.store, **self.refresher_options
                )
                refresher.client = replace(refresher.client, auth_method=_AUTH_METHODS[method])
                if self._refresher is not None:
                    self._refresher.close()  # the previous registration's
                self._refresher, self._refresher_key = refresher, key
            return self._refresher

    def _issuer_of(self, info: OAuthClientInformationFull) -> str:
        recorded = None if info.issuer is None else _root_issuer(info.issuer)
        configured = None if self.issuer is None else _root_issuer(self.issuer)
        if configured is not None and recorded is not None and configured != recorded:
            raise ClientError(
                f"the client registration is bound to issuer {recorded!r}, not {configured!r}"
                " (SEP-2352: credentials belong to the server that registered them)"
            )
        issuer = configured or recorded
        if issuer is None:
            raise ClientError(
                "no issuer is known for this client registration: pass MCPAuth(issuer=...)"
            )
        return issuer

    def close(self) -> None:
        """Closes the refresher's HTTP client (the MCP client's own is the caller's to close)."""
        if self._refresher is not None:
            self._refresher.close()

    # -- the pair --------------------------------------------------------------------------------

    def _stored(self) -> TokenPair:
        pair = self.store.load()
        if pair is None:
            raise ReauthorizationRequired("no token pair in the store: authorize first")
        if pair.reauthorize is not None:
            raise ReauthorizationRequired(pair.reauthorize, pair.reauthorize_error)
        return pair

    def current(self) -> TokenPair:
        """A pair to send: the stored one, refreshed first if it expires within `margin` (or a
        dead process left an exchange of it unfinished). Blocking: run it in a worker thread."""
        pair = self._stored()
        if pair.exchanging_since is None and not pair.expires_within(self.margin, self.clock()):
            return pair
        return self.refresher().refresh(pair, self.margin)

    def after_refusal(self, used: TokenPair) -> TokenPair:
        """A pair newer than `used`, which the MCP server refused: the one another caller stored
        meanwhile, or a rotation of `used`. Blocking: run it in a worker thread."""
        return self.refresher().refresh(used, self.margin)

    # -- the flow ---------------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        raise RuntimeError("MCPAuth serves the MCP SDK's httpx2.AsyncClient: it has no sync flow")

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await request.aread()
        used: TokenPair | None = None
        step_up = False
        try:
            used = await anyio.to_thread.run_sync(self.current)
        except ReauthorizationRequired as ended:
            reason = ended
        else:
            _attach(request, used)
            response = yield request
            challenges = response.headers.get_list("www-authenticate")
            if is_invalid_token(response.status_code, challenges):
                # RFC 6750 §3.1 `invalid_token` (expired, revoked): refresh, unless another
                # caller already did, and send the request once more.
                await response.aread()
                try:
                    pair = await anyio.to_thread.run_sync(self.after_refusal, used)
                except ReauthorizationRequired as ended:
                    reason = ended
                else:
                    _attach(request, pair)
                    yield request
                    return
            elif is_insufficient_scope(response.status_code, challenges):
                # RFC 6750 §3.1 `insufficient_scope`: the SDK's step-up authorization (SEP-2350)
                # asks for the scope the server wants, on top of the client's.
                await response.aread()
                reason = ReauthorizationRequired("the MCP server asks for more scope")
                step_up = True
            else:
                return
        # No pair, the grant is over, or more scope is needed: an interactive authorization, one
        # at a time in this process.
        async with self._authorizing:
            try:
                pair = await anyio.to_thread.run_sync(self.current)
            except ReauthorizationRequired:
                pass
            else:
                if used is None or pair.access_token != used.access_token:
                    _attach(request, pair)  # another task authorized while this one waited
                    yield request
                    return
            if self.redirect_handler is None or self.callback_handler is None:
                raise reason
            if not step_up:
                request.headers.pop("Authorization", None)
            # With the token of a step up left on the request, the provider's first answer is
            # the same 403, which starts its step-up flow; without a token, the 401 starts its
            # discovery and authorization.
            flow = self._provider().async_auth_flow(request)
            try:
                outgoing = await flow.__anext__()
                while True:
                    response = yield outgoing
                    outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            finally:
                await flow.aclose()

    def _provider(self) -> OAuthClientProvider:
        """A fresh SDK provider for one interactive authorization: a provider that already ran
        holds the pair it obtained in its context, and would refresh it (a rotated, dead refresh
        token by then: a reuse) the next time it ran."""
        return OAuthClientProvider(
            self.server_url,
            self.client_metadata.model_copy(deep=True),  # the SDK rewrites its scope
            _HandOverStorage(self),
            redirect_handler=self.redirect_handler,
            callback_handler=self.callback_handler,
            client_metadata_url=self.client_metadata_url,
            validate_resource_url=self.validate_resource_url,
        )


# RFC 6750 §3: `WWW-Authenticate: Bearer error="insufficient_scope", ...`
_INSUFFICIENT_SCOPE = re.compile(r'(?:^|[\s,])error\s*=\s*"?insufficient_scope"?', re.IGNORECASE)


def is_insufficient_scope(status: int, challenges: Iterable[str]) -> bool:
    """A 403 whose Bearer challenge says `error="insufficient_scope"` (RFC 6750 §3.1)."""
    return status == 403 and any(
        challenge.strip().lower().startswith("bearer") and _INSUFFICIENT_SCOPE.search(challenge)
        for challenge in challenges
    )


def _attach(request: httpx2.Request, pair: TokenPair) -> None:
    request.headers["Authorization"] = f"Bearer {pair.access_token}"
