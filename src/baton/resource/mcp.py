"""`baton.resource` for MCP servers built with the `mcp` SDK (`pip install "baton-oauth[mcp]"`).

    tokens = BatonTokenVerifier.from_env()   # BATON_ISSUER, BATON_RS_ID, BATON_RS_SECRET,
                                             # BATON_AUDIENCE = this MCP server's URL
    server = MCPServer("notes", token_verifier=tokens, auth=tokens.auth_settings(["read"]))
    app = tokens.protect(server.streamable_http_app())   # serve `app` with uvicorn

- `BatonTokenVerifier` is the SDK's `TokenVerifier`: it verifies with `baton.resource.Verifier`
  (opaque or JWT, the revocation feed) and maps the `Principal` to the SDK's `AccessToken`.
- It accepts only tokens issued for this MCP server: its `aud` must name the server's URL (RFC
  8707; MCP authorization: servers "MUST validate that access tokens were issued specifically
  for them as the intended audience"). A verifier that also accepts tokens issued for no
  resource (the issuer as an audience) is refused at construction.
- `protect(app)` wraps the SDK's ASGI app: it starts the revocation feed once the app's startup
  completed and stops it at shutdown (`running()` does the same for an app whose lifespan you
  compose, e.g. the MCP app mounted in another), serves the RFC 9728 metadata at its
  path-suffixed and root URLs (`scopes_supported`: the scopes given to `auth_settings`), names
  those scopes in the SDK's 401 and 403 challenges (`scope=`, which the SDK leaves out), and
  answers **503 with `Retry-After`** while Baton cannot be reached, and adds
  `Baton-Token-Superseded: dies-at=<seconds>` to the answer to a request whose token is
  superseded (issue 28; `Verifier(superseded_header=False)` leaves it out).

Why the wrapper: the SDK's `TokenVerifier.verify_token` can say "valid" or "not valid" (None,
which the SDK answers 401, and the MCP client then starts a new authorization against an
authorization server that is down), and an exception becomes a 500. So the verifier raises
`VerifierUnavailable`, and `protect` turns the answer the SDK gives to that exception into the
503 the error describes (no challenge, `Retry-After`, a JSON body).
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from baton.core.tokens import digest as token_digest
from baton.resource.errors import AuthError, VerifierUnavailable, quoted
from baton.resource.headers import superseded_header
from baton.resource.metadata import ResourceMetadata, send_response
from baton.resource.principal import Principal
from baton.resource.verifier import Verifier

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("baton.resource.mcp")

# A `scope` attribute already in a challenge (not `error_description="Required scope: x"`).
_SCOPE_ATTRIBUTE = re.compile(r"(?:^Bearer\s+|,\s*)scope\s*=", re.IGNORECASE)


@dataclass(slots=True)
class _Seen:
    """Filled by the token verifier during one request: `error` when Baton could not be asked,
    `superseded` (the header) when the token is superseded."""

    error: VerifierUnavailable | None = None
    superseded: tuple[bytes, bytes] | None = None


# Set by `protect` around each request; the SDK calls `verify_token` in the same task (its
# authentication middleware), which records what it saw here for `protect` to answer.
_seen: contextvars.ContextVar[_Seen | None] = contextvars.ContextVar("baton_mcp_seen", default=None)


class BatonTokenVerifier:
    """The `mcp` SDK's `TokenVerifier`, backed by a `baton.resource.Verifier`.

    `resource` is this MCP server's URL (its RFC 9728 resource identifier, what clients send as
    `resource` and tokens carry as `aud`); it must be one of the verifier's audiences, and may
    be left out when the verifier has exactly one."""

    def __init__(self, verifier: Verifier, resource: str | None = None) -> None:
        if resource is None:
            if len(verifier.audiences) != 1:
                raise ValueError("resource: which of the verifier's audiences is this MCP server")
            (resource,) = verifier.audiences
        if resource not in verifier.audiences:
            raise ValueError(
                f"the verifier's audience must be this MCP server's URL {resource!r}: "
                f"Verifier(..., audience={resource!r})"
            )
        if verifier.accepts_issuer:
            # A token issued for no resource names the issuer as its audience: valid at every
            # API that accepts it, so never for this server alone.
            raise ValueError(
                "an MCP server must accept only tokens issued for it (MCP authorization, RFC "
                "8707): the verifier's audiences must not include the issuer"
            )
        self.verifier = verifier
        self.resource = resource
        # What every request needs: set by `auth_settings`, advertised by `protect`.
        self.required_scopes: tuple[str, ...] | None = None
        self._started = False
        self._stopped = False  # stopped (an app's shutdown): requests do not start it again

    @classmethod
    def from_env(cls, prefix: str = "BATON_", **options: Any) -> BatonTokenVerifier:
        """`Verifier.from_env`, whose `BATON_AUDIENCE` is this MCP server's URL."""
        return cls(Verifier.from_env(prefix, **options))

    # -- the SDK's TokenVerifier -----------------------------------------------------------------

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's `TokenVerifier.verify_token`: the token's access info, or None when it is
        not valid here (the SDK answers 401 with `resource_metadata` in the challenge).

        Raises `VerifierUnavailable` when Baton could not be asked: under `protect` the
        request is answered 503 with `Retry-After`; without it the SDK answers 500."""
        seen = _seen.get()
        try:
            principal = await self.verifier.averify(token)
        except VerifierUnavailable as exc:
            if seen is not None:
                seen.error = exc
            raise
        except AuthError:
            return None
        access = self.access_token(principal, token)
        superseded = superseded_header(self.verifier, principal)
        if seen is not None and access is not None and superseded is not None:
            seen.superseded = (superseded[0].encode(), superseded[1].encode())
        return access

    def access_token(self, principal: Principal, token: str) -> AccessToken | None:
        """The SDK's view of a verified token, or None when the token was not issued for this
        server: the verifier may accept other audiences (another API it also serves), but MCP
        authorization says servers "MUST validate that access tokens were issued specifically
        for them as the intended audience" (RFC 8707), and an `AuthSettings` built by hand does
        not have the SDK check `resource` (`validate_token_resource` defaults to off).

        `token` is not the bearer token but its SHA-256 digest (hex): the SDK never reads it,
        and the MCP specification forbids passing a client's token on ("MCP servers MUST NOT
        pass through the token it received from the MCP client"), so the plaintext is not kept
        past verification."""
        if not self._for_this_server(principal.claims.get("aud")):
            return None
        claims = dict(principal.claims)
        # The SDK identifies a session's principal by (client_id, iss, sub).
        claims.setdefault("iss", self.verifier.issuer)
        return AccessToken(
            token=token_digest(token).hex(),
            client_id=principal.client_id,
            scopes=sorted(principal.scopes),
            expires_at=principal.expires_at,
            resource=self.resource,
            subject=principal.subject,
            claims=claims,
        )

    def _for_this_server(self, aud: Any) -> bool:
        """Whether the token's `aud` (a string or a list, RFC 7519 §4.1.3) names this server."""
        named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        return self.resource in named

    # -- configuration for the SDK ---------------------------------------------------------------

    def auth_settings(
        self, required_scopes: Sequence[str] | None = None, **options: Any
    ) -> AuthSettings:
        """The SDK's `AuthSettings` for this server: Baton as the issuer, `resource` as the
        resource server URL (the SDK serves its RFC 9728 metadata and names it in 401
        challenges), the SDK's own resource check on, and the scopes every request needs (403
        `insufficient_scope` without them). The scopes are remembered: `protect` advertises
        them (`scopes_supported`) and names them in the SDK's challenges."""
        if isinstance(required_scopes, str):
            raise ValueError("required_scopes: a list of scopes")
        self.required_scopes = tuple(required_scopes) if required_scopes is not None else None
        return AuthSettings(
            issuer_url=AnyHttpUrl(self.verifier.issuer),
            resource_server_url=AnyHttpUrl(self.resource),
            validate_token_resource=True,
            required_scopes=list(required_scopes) if required_scopes is not None else None,
            **options,
        )

    def metadata(
        self,
        scopes_supported: Collection[str] | None = None,
        resource_name: str | None = None,
        **options: Any,
    ) -> ResourceMetadata:
        """The RFC 9728 metadata of this server, Baton its authorization server."""
        return ResourceMetadata(
            self.resource,
            [self.verifier.issuer],
            scopes_supported=scopes_supported,
            resource_name=resource_name,
            **options,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the revocation feed (idempotent). Until it is in sync, every token is
        introspected."""
        self._stopped = False
        if not self._started:
            self._started = True
            self.verifier.start()

    def _start_for_a_request(self) -> None:
        """An app without a lifespan (mounted in another) starts the feed at its first
        request; never once the feed was stopped (a request late after the app's shutdown
        would leave a feed thread no one stops)."""
        if not self._stopped:
            self.start()

    async def stop(self) -> None:
        """Stops the feed (its thread is joined off the event loop, under asyncio or trio);
        requests do not start it again until `start()` (a new startup)."""
        self._stopped = True
        if self._started:
            self._started = False
            await anyio.to_thread.run_sync(self.verifier.stop)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BatonTokenVerifier]:
        """The feed for the duration of the block: for an application lifespan you write
        yourself (`protect` does it for the app it wraps), e.g. the MCP app mounted in a
        FastAPI app, whose lifespan must also run the SDK's session manager:

            async with tokens.running(), server.session_manager.run(): yield
        """
        self.start()
        try:
            yield self
        finally:
            await self.stop()

    def protect(
        self,
        app: ASGIApp,
        metadata: ResourceMetadata | None = None,
        *,
        realm: str = "mcp",
        manage_feed: bool = True,
        required_scopes: Sequence[str] | None = None,
    ) -> ASGIApp:
        """The SDK's ASGI app, with the feed run by its lifespan, the 503 answer while Baton
        cannot be reached, and `metadata` served at its URLs.

        `required_scopes` (default: those given to `auth_settings`) are the scopes every request
        needs, as the SDK's `AuthSettings` say: the default `metadata` lists them as
        `scopes_supported`, and the SDK's 401 and 403 challenges name them as `scope`, which
        MCP clients request (MCP authorization, scope selection: the challenge's `scope`
        first, else `scopes_supported`)."""
        scopes = self.required_scopes if required_scopes is None else tuple(required_scopes)
        if metadata is None:
            metadata = self.metadata(scopes_supported=scopes)
        return _Protected(app, self, metadata, realm, manage_feed, scopes)


def _unavailable_in(exc: BaseException) -> VerifierUnavailable | None:
    """The `VerifierUnavailable` an exception is, or that of a group (from a task group in the
    app) made of nothing else; None for any other failure."""
    if isinstance(exc, VerifierUnavailable):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [_unavailable_in(inner) for inner in exc.exceptions]
        if found and all(found):
            return found[0]
    return None


class _Protected:
    def __init__(
        self,
        app: ASGIApp,
        tokens: BatonTokenVerifier,
        metadata: ResourceMetadata,
        realm: str,
        manage_feed: bool,
        required_scopes: tuple[str, ...] | None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.metadata = metadata
        self.realm = realm
        self.manage_feed = manage_feed
        # RFC 6750 §3: "scope" attribute value, space-delimited and quoted.
        self.scope = quoted(" ".join(required_scopes)) if required_scopes else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.metadata.paths:
            await self.metadata.serve(scope, receive, send)
            return
        if self.manage_feed:
            self.tokens._start_for_a_request()  # no lifespan (a mounted app)
        seen = _Seen()
        reset = _seen.set(seen)
        answered = False  # the 503 went out instead of the app's answer
        forwarded = False  # part of the app's own answer went out

        async def guarded_send(message: Message) -> None:
            nonlocal answered, forwarded
            if seen.error is not None and not forwarded:
                # The SDK's answer to the verifier's exception (its 500): replaced once, the
                # rest of it dropped.
                if not answered:
                    answered = True
                    await self._unavailable(send, seen.error)
                return
            forwarded = True
            message = self._with_scope(message)
            if seen.superseded is not None and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), seen.superseded]}
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            error = _unavailable_in(exc)
            if error is None or forwarded:
                raise
            if not answered:
                await self._unavailable(send, error)
        finally:
            _seen.reset(reset)

    async def _unavailable(self, send: Send, error: VerifierUnavailable) -> None:
        log.warning("Baton cannot be reached, answering 503: %s", error.description)
        status, headers, body = error.response_parts(self.realm)
        await send_response(send, status, headers, body)

    def _with_scope(self, message: Message) -> Message:
        """The SDK's 401 or 403 challenge with the scopes the request needs: RFC 6750 §3 "The
        "scope" attribute ... indicating the required scope of the access token"; MCP
        authorization: servers "SHOULD include a scope parameter in the WWW-Authenticate
        header" of a 401, and a 403 `insufficient_scope` names the scopes "needed to satisfy
        the request" (scope challenge, step-up authorization). The SDK names none."""
        if (
            self.scope is None
            or message["type"] != "http.response.start"
            or message.get("status") not in (401, 403)
        ):
            return message
        headers = []
        for name, value in message.get("headers", []):
            if bytes(name).lower() == b"www-authenticate":
                challenge = bytes(value).decode("latin-1")
                if challenge.startswith("Bearer ") and not _SCOPE_ATTRIBUTE.search(challenge):
                    value = f"{challenge}, scope={self.scope}".encode("latin-1")
            headers.append((name, value))
        return {**message, "headers": headers}

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Runs the app's lifespan with the feed: started once the app's startup completed
        (not when it is asked for: a startup that fails ends the server and no one would stop
        the feed), stopped at shutdown, or if the app's lifespan ends any other way."""
        if not self.manage_feed:
            await self.app(scope, receive, send)
            return
        started = False

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.tokens.stop()
            return message

        async def lifespan_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                self.tokens.start()
                started = True
            await send(message)

        try:
            await self.app(scope, lifespan_receive, lifespan_send)
        finally:
            if started:
                await self.tokens.stop()
