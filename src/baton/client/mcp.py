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

**Issuer binding.** The pair is stored with the issuer, token endpoint and RFC 8707 resource it
was obtained for, and a registration the SDK made is kept in memory until the pair it produced is
stored: both are then written together, under the store's lock. A refresh token is only ever sent
to the token endpoint of the issuer recorded with its pair; and while a live pair exists (or
`issuer=` is configured), the interactive flow goes to that authorization server only: an MCP
server whose metadata later names another one (a malicious or compromised resource) gets a
`ClientError`, not a registration, a login page, or the refresh token. That includes an MCP
server without resource metadata (its own origin is then the authorization server), and the
allowed server's RFC 8414 metadata answering an error (the SDK would then fall back to the MCP
server's origin for `/register`, `/authorize` and `/token`). A refresh names the resource the
pair recorded, and none for a pair that recorded none (obtained without one, or stored by an
earlier version: its grant may be for a parent resource).

**Outages.** While the authorization server is down (connection refused, or Baton's 503
`temporarily_unavailable`), a request that needs a refresh fails after about the refresher's
`timeout` with `AuthorizationServerUnavailable`: no authorization starts, and the stored pair is
kept (after a 503, marked as exchanging: the refresh may have committed, so the next call
finishes it inside the leeway). A refresh that was only early (inside `margin`) sends the stored
access token instead, as long as it has not expired.

**A server refusing every token.** When an access token refreshed a moment ago is refused as
well, that pair is not rotated again (in this process): the next refusal goes to the
interactive flow (or `ReauthorizationRequired`) without costing another rotation.

This module is the only one of `baton.client` that imports `mcp` (the `mcp` extra).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from baton.client.auth import Superseded, bearer_error, is_invalid_token
from baton.client.endpoint import AuthMethod
from baton.client.errors import (
    AuthorizationServerUnavailable,
    ClientError,
    ReauthorizationRequired,
)
from baton.client.refresher import Hooks, Refresher, root_issuer, stored_pair, superseded
from baton.client.stores import FileStore, TokenStore, read_private, write_private
from baton.client.superseded import HEADER, SupersededWatch
from baton.client.tokens import TokenPair, fingerprint

__all__ = ["MCPAuth", "is_insufficient_scope", "pair_of"]

# Seconds during which, after an early refresh found the authorization server down, requests
# send the still-valid access token without trying again (each try may wait the refresher's
# `timeout`, one caller at a time).
_EARLY_REFRESH_PAUSE = 5.0

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
                return OAuthClientInformationFull.model_validate_json(read_private(self.path))
            except FileNotFoundError:
                pass
        return self._info

    def save(self, info: OAuthClientInformationFull) -> None:
        # The registration may hold a client secret: mode 0600, in a private directory, atomic.
        if self.path is not None:
            write_private(self.path, info.model_dump_json(exclude_none=True).encode("utf-8"))
        self._info = info


class _HandOverStorage:
    """The SDK's `TokenStorage` for the one interactive authorization `MCPAuth` hands over.

    `get_tokens` is always None: the provider then neither attaches a stored (perhaps expired)
    access token nor refreshes (`OAuthContext.can_refresh_token` needs a refresh token), so no
    refresh token ever leaves through the SDK. A registration the provider makes stays in memory
    (`pending`) until the pair it produced arrives: `set_tokens` then writes both, with the
    issuer, token endpoint and resource the pair was obtained for, under the store's lock, before
    the provider uses the pair (it calls `set_tokens` before it retries the request). A
    registration made for a flow that never finishes, or that is refused, is never persisted: the
    one the stored pair belongs to stays on file."""

    def __init__(self, owner: MCPAuth, allowed_issuer: str | None) -> None:
        self.owner = owner
        self.allowed_issuer = allowed_issuer
        self.provider: OAuthClientProvider | None = None
        self.pending: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        assert self.provider is not None
        context = self.provider.context
        metadata = context.oauth_metadata
        issuer = _issuer_of_context(self.provider)
        _check_context(self.allowed_issuer, self.provider)
        pair = replace(
            pair_of(tokens, self.owner.clock()),
            issuer=issuer,
            token_endpoint=(
                None
                if metadata is None or metadata.token_endpoint is None
                else str(metadata.token_endpoint)
            ),
            resource=(
                context.get_resource_url()
                if context.should_include_resource_param(context.protocol_version)
                else None
            ),
        )
        await anyio.to_thread.run_sync(self.owner.store_authorized, pair, self.pending)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        if self.pending is not None:
            return self.pending
        return await anyio.to_thread.run_sync(self.owner.client_record.load)

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.pending = client_info  # persisted with the pair it produces, never alone


class _Provider(OAuthClientProvider):
    """The SDK's provider, held to one authorization server when one is known.

    `_select_authorization_server` is the SDK's hook for choosing among the servers a protected
    resource's metadata (RFC 9728) lists; it is overridden so that metadata naming another server
    stops the flow before that server's metadata is fetched or a client registered there (a
    test fails if the SDK stops calling it). The redirect handler is wrapped as well, the last
    check before a person is sent anywhere (the path without resource metadata included)."""

    def __init__(
        self,
        server_url: str,
        client_metadata: OAuthClientMetadata,
        storage: _HandOverStorage,
        redirect_handler: Callable[[str], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        async def checked_redirect(url: str) -> None:
            _check_context(storage.allowed_issuer, self)
            await redirect_handler(url)

        super().__init__(
            server_url, client_metadata, storage, redirect_handler=checked_redirect, **kwargs
        )
        self.allowed_issuer = storage.allowed_issuer
        storage.provider = self

    def _expected_issuer(self) -> str:
        # The SDK's hook for the issuer its metadata and credentials must belong to, asked before
        # any authorization server metadata is fetched or a client registered: on the path
        # without resource metadata (2025-03-26) it is the MCP server's own origin, which is
        # refused here while another server is the allowed one (a test fails if the SDK stops
        # calling it).
        expected = super()._expected_issuer()
        _check_authorization_server(self.allowed_issuer, expected)
        return expected

    def _select_authorization_server(self, advertised: list[str]) -> str:
        if self.allowed_issuer is None:
            return super()._select_authorization_server(advertised)
        for server in advertised:
            if root_issuer(server) == self.allowed_issuer:
                return server
        _check_authorization_server(self.allowed_issuer, root_issuer(advertised[0]))
        raise AssertionError("unreachable")  # pragma: no cover


def _issuer_of_context(provider: OAuthClientProvider) -> str:
    """The authorization server the provider is about to use: the issuer of the metadata it
    validated (RFC 8414 §3.3), else where the SDK actually sends the person and its requests
    without metadata: `/authorize`, `/register` and `/token` on the MCP server's origin, whatever
    server the resource metadata named (so the pair is never recorded as that server's)."""
    context = provider.context
    if context.oauth_metadata is not None:
        return root_issuer(str(context.oauth_metadata.issuer))
    return context.get_authorization_base_url(context.server_url)


def _check_context(allowed: str | None, provider: OAuthClientProvider) -> None:
    """Before a registration, a token request, a redirect or a stored pair: while one server is
    allowed, the provider must hold that server's validated metadata. Without metadata (the
    server's RFC 8414 document answered an error) the SDK falls back to the MCP server's origin
    for its endpoints, which is not the allowed server even when the resource metadata named
    it."""
    if allowed is None:
        return
    if provider.context.oauth_metadata is None:
        raise ClientError(
            f"the metadata of authorization server {allowed!r} could not be read, and without it"
            " the MCP SDK would register, send the person and exchange the code at the MCP"
            f" server's origin {_issuer_of_context(provider)!r}: refused; try again later"
        )
    _check_authorization_server(allowed, _issuer_of_context(provider))


def _check_authorization_server(allowed: str | None, issuer: str) -> None:
    if allowed is not None and root_issuer(issuer) != allowed:
        raise ClientError(
            f"the MCP server sends this client to authorization server {issuer!r}, but its"
            f" credentials and stored pair belong to {allowed!r}: refused (a refresh token, a"
            " registration or a login is never taken to another server)"
        )


def _union(*scopes: str | None) -> str | None:
    """Space-delimited scopes (RFC 6749 §3.3) joined without repeats, first seen first."""
    names: dict[str, None] = {}
    for scope in scopes:
        names.update(dict.fromkeys((scope or "").split()))
    return " ".join(names) or None


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
    metadata is read, with Baton's leeway), and the only one the interactive flow may use.
    Default: the issuer recorded with the stored pair (or on the registration the SDK made); a
    pre-registered client needs it. A refresh token is only ever sent to the issuer recorded with
    its pair, never to one an MCP server's metadata names later; while a live pair exists, an
    MCP server naming another authorization server gets `ClientError`.

    `margin`: seconds before expiry a request refreshes first. `refresher_options` go to
    `Refresher.discover` (`leeway`, `hooks`, `http`, `timeout`, `clock`, ...).

    Without `redirect_handler` and `callback_handler`, a request that needs an authorization
    raises `ReauthorizationRequired` instead of starting one. A request whose access token has
    expired while the authorization server is down raises `AuthorizationServerUnavailable`
    after about the refresher's `timeout`: the pair is kept, and no authorization starts (one
    whose token is only inside `margin` sends it).
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
        # A pair an earlier version stored without its issuer and token endpoint records them on
        # its first rotation (it never recorded a resource: none is sent for it, its grant may
        # be for a parent resource the resource metadata named).
        refresher_options.setdefault("bind_pairs", True)
        self.refresher_options = refresher_options
        self.clock: Callable[[], float] = refresher_options.get("clock", time.time)
        self._refresher: Refresher | None = None
        self._refresher_key: tuple[str, str, str | None, str | None] | None = None
        self._refresher_lock = threading.Lock()
        self._authorizing = anyio.Lock()  # one interactive authorization at a time per process
        # The fingerprint of a freshly rotated access token the MCP server refused as well: that
        # pair is not rotated again on a refusal (each would cost a rotation and change nothing).
        self._refused_fresh: str | None = None
        # Until then (after the server was found down), a pair inside `margin` but not expired is
        # sent without trying to refresh it first.
        self._early_paused_until = 0.0
        self._watch = SupersededWatch()

    def on_superseded(self, callback: Superseded) -> Superseded:
        """Registers `callback` as `Hooks.on_superseded` (of `refresher_options["hooks"]`): called
        with a `SupersededEvent` when an MCP server says the access token a request carried was
        superseded (`Baton-Token-Superseded`), once per token."""
        hooks = self.refresher_options.setdefault("hooks", Hooks())
        hooks.on_superseded = callback
        return callback

    async def _superseded(self, response: httpx2.Response, used: TokenPair) -> None:
        if HEADER in response.headers:  # reads the store: off the event loop
            event = await anyio.to_thread.run_sync(
                self._watch.event, response.headers.get_list(HEADER), used, self.store.load
            )
            superseded(self.refresher_options.get("hooks"), event)

    # -- the refresher ---------------------------------------------------------------------------

    def refresher(self, pair: TokenPair | None = None) -> Refresher:
        """Baton's refresher for the current registration (built once, after reading the
        issuer's metadata; built again if the SDK registered another client), refusing one whose
        issuer is not the one `pair` was issued by. Blocking I/O: call it from a worker thread
        in async code."""
        info = self.client_record.load()
        if info is None or not info.client_id:
            raise ReauthorizationRequired("no client registration is stored: authorize first")
        issuer = self._issuer_of(info, pair)
        method = info.token_endpoint_auth_method
        if method not in _AUTH_METHODS:
            raise ClientError(
                f"the client registration uses token_endpoint_auth_method {method!r}, which"
                " baton.client cannot apply to a refresh"
            )
        key = (issuer, info.client_id, info.client_secret, method)
        with self._refresher_lock:
            if self._refresher is None or self._refresher_key != key:
                try:
                    refresher = Refresher.discover(
                        issuer,
                        info.client_id,
                        info.client_secret,
                        self.store,
                        **self.refresher_options,
                    )
                except httpx.TransportError as exc:
                    raise AuthorizationServerUnavailable(
                        f"the authorization server {issuer} is unavailable ({exc!r}); the stored"
                        " pair is kept: try again later"
                    ) from exc
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code < 500:
                        raise ClientError(f"cannot read {issuer}'s metadata: {exc}") from exc
                    raise AuthorizationServerUnavailable(
                        f"the authorization server {issuer} is unavailable"
                        f" ({exc.response.status_code}); the stored pair is kept: try again later"
                    ) from exc
                refresher.client = replace(refresher.client, auth_method=_AUTH_METHODS[method])
                if self._refresher is not None:
                    self._refresher.close()  # the previous registration's
                self._refresher, self._refresher_key = refresher, key
            return self._refresher

    def _issuer_of(self, info: OAuthClientInformationFull, pair: TokenPair | None = None) -> str:
        recorded = None if info.issuer is None else root_issuer(info.issuer)
        configured = None if self.issuer is None else root_issuer(self.issuer)
        bound = None if pair is None or pair.issuer is None else root_issuer(pair.issuer)
        if configured is not None and recorded is not None and configured != recorded:
            raise ClientError(
                f"the client registration is bound to issuer {recorded!r}, not {configured!r}"
                " (SEP-2352: credentials belong to the server that registered them)"
            )
        for other in (configured, recorded):
            if bound is not None and other is not None and other != bound:
                # The pair's refresh token belongs to the server that issued it: never sent to
                # another (RFC 6749 §10.4), whatever registration is on file.
                raise ClientError(
                    f"the stored pair was issued by {bound!r}: its refresh token is never sent"
                    f" to {other!r} (the client registration on file, or MCPAuth(issuer=...))"
                )
        issuer = configured or bound or recorded
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

    def current(self) -> TokenPair:
        """A pair to send: the stored one, refreshed first if it expires within `margin` (or a
        dead process left an exchange of it unfinished). Blocking: run it in a worker thread."""
        pair = stored_pair(self.store)
        now = self.clock()
        if pair.exchanging_since is None and (
            not pair.expires_within(self.margin, now)
            or (now < self._early_paused_until and not pair.expires_within(0, now))
        ):
            return pair
        try:
            return self.refresher(pair).refresh(pair, self.margin)
        except AuthorizationServerUnavailable:
            # Refreshing early (inside `margin`) is a convenience: while the authorization server
            # is down, a stored access token that has not expired is still sent (RFC 6749 §1.5:
            # it is good until it expires), rather than failing a request it would authorize;
            # and the next requests do not wait for the server again for a few seconds.
            now = self.clock()
            kept = self.store.load()
            if kept is None or kept.reauthorize is not None or kept.expires_within(0, now):
                raise
            self._early_paused_until = now + _EARLY_REFRESH_PAUSE
            return kept

    def after_refusal(self, used: TokenPair) -> TokenPair:
        """A pair newer than `used`, which the MCP server refused: the one another caller stored
        meanwhile, or a rotation of `used`. Blocking: run it in a worker thread."""
        return self.refresher(used).refresh(used, self.margin)

    def store_authorized(
        self, pair: TokenPair, registration: OAuthClientInformationFull | None
    ) -> None:
        """Stores the pair an interactive authorization obtained, with the registration it was
        obtained with (when the SDK made one), together under the store's lock: another process
        never reads a registration without its pair, nor a pair with another's registration.
        Blocking: run it in a worker thread."""
        with self.store.lock() as lease:
            if registration is not None:
                self.client_record.save(registration)
            self.store.save(pair, lease)

    def _live(self) -> TokenPair | None:
        pair = self.store.load()
        if pair is None or pair.reauthorize is not None or pair.refresh_token is None:
            return None
        return pair

    def allowed_issuer(self) -> str | None:
        """The one authorization server an interactive flow may go to: the configured issuer,
        else the one a live pair was issued by (its registration's, for a pair stored before
        pairs recorded it); None (any the MCP server names) when neither is known. Blocking."""
        if self.issuer is not None:
            return root_issuer(self.issuer)
        live = self._live()
        if live is None:
            return None
        if live.issuer is not None:
            return root_issuer(live.issuer)
        info = self.client_record.load()
        return None if info is None or info.issuer is None else root_issuer(info.issuer)

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
                    if fingerprint(used.access_token) == self._refused_fresh:
                        raise ReauthorizationRequired(
                            "the MCP server refuses a freshly refreshed access token"
                        )
                    pair = await anyio.to_thread.run_sync(self.after_refusal, used)
                except ReauthorizationRequired as ended:
                    reason = ended
                else:
                    _attach(request, pair)
                    response = yield request
                    challenges = response.headers.get_list("www-authenticate")
                    if pair.access_token == used.access_token or not is_invalid_token(
                        response.status_code, challenges
                    ):
                        await self._superseded(response, pair)
                        return
                    # A token rotated a moment ago is refused as well: refreshing again would
                    # only cost another rotation per request (the grant is not one this server
                    # accepts). The interactive flow, once, is the way out.
                    await response.aread()
                    used = pair
                    self._refused_fresh = fingerprint(pair.access_token)  # not rotated again
                    reason = ReauthorizationRequired(
                        "the MCP server refuses a freshly refreshed access token"
                    )
            elif is_insufficient_scope(response.status_code, challenges):
                # RFC 6750 §3.1 `insufficient_scope`: the SDK's step-up authorization (SEP-2350)
                # asks for the scope the server wants, on top of the client's.
                await response.aread()
                reason = ReauthorizationRequired("the MCP server asks for more scope")
                step_up = True
            else:
                await self._superseded(response, used)
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
            allowed = await anyio.to_thread.run_sync(self.allowed_issuer)
            granted = used.scope if step_up and used is not None else None
            provider = self._provider(allowed, granted)
            flow = provider.async_auth_flow(request)
            try:
                outgoing = await flow.__anext__()
                while True:
                    if outgoing is not request and outgoing.method != "GET":
                        # A registration or a code exchange: only with the allowed server's
                        # metadata (never the SDK's fallback to the MCP server's origin).
                        _check_context(allowed, provider)
                    response = yield outgoing
                    outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            finally:
                await flow.aclose()

    def _provider(self, allowed_issuer: str | None, granted: str | None) -> OAuthClientProvider:
        """A fresh SDK provider for one interactive authorization: a provider that already ran
        holds the pair it obtained in its context, and would refresh it (a rotated, dead refresh
        token by then: a reuse) the next time it ran. `granted`, on a step up, is the scope of
        the pair the server found insufficient: the SDK asks for the union of its client
        metadata's scope and the challenged one (SEP-2350), and never sees the stored pair, so
        the scope an earlier step up obtained is added here."""
        assert self.redirect_handler is not None
        metadata = self.client_metadata.model_copy(deep=True)  # the SDK rewrites its scope
        if granted is not None:
            metadata.scope = _union(metadata.scope, granted)
        return _Provider(
            self.server_url,
            metadata,
            _HandOverStorage(self, allowed_issuer),
            redirect_handler=self.redirect_handler,
            callback_handler=self.callback_handler,
            client_metadata_url=self.client_metadata_url,
            validate_resource_url=self.validate_resource_url,
        )


def is_insufficient_scope(status: int, challenges: Iterable[str]) -> bool:
    """A 403 whose Bearer challenge says `error="insufficient_scope"` (RFC 6750 §3.1)."""
    return bearer_error(status, 403, "insufficient_scope", challenges)


def _attach(request: httpx2.Request, pair: TokenPair) -> None:
    request.headers["Authorization"] = f"Bearer {pair.access_token}"
