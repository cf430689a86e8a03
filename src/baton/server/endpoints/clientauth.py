"""Client authentication at the token, revocation and introspection endpoints.

`client_secret_basic` (RFC 6749 §2.3.1: id and secret are form-encoded before Base64, so they are
decoded here; strict clients send `%2D` for `-`), `client_secret_post`, `none` for public
clients, which only identify themselves, and `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a
JWT signed with a key of the client's `jwks_uri`, in `client_assertion`. One method per request
(RFC 6749 section 2.3); a client registered for `private_key_jwt` authenticates no other way, and
no other client that way.

A client of a client ID metadata document is authenticated on a current copy of its document:
its row is refreshed here when its document expired (`_current`, through the app's
`ClientDocuments.authenticating`, which says what happens when the document cannot be fetched).
Only document clients pay for this; the secret path of every other client is as it was.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import unquote_plus

from starlette.requests import Request

from baton.core.client_assertion import (
    JWT_BEARER,
    PRIVATE_KEY_JWT,
    AssertionProblem,
    Header,
    asserted_client,
    check,
    replay_digest,
    unverified,
)
from baton.core.client_policy import NO_POLICY, ClientPolicy
from baton.core.tokens import digest
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import OAuthError, invalid_client, invalid_request
from baton.server.endpoints.forms import Form
from baton.server.endpoints.stores import ClientLookup
from baton.server.runtime.client_keys import client_keys
from baton.server.runtime.cors import about_client
from baton.server.runtime.documents import DocumentError
from baton.server.runtime.protection import RETRY_AFTER_SECONDS
from baton.store.base import Client, ClientChanged, RegisteredVia

if TYPE_CHECKING:
    from baton.server.runtime.context import Baton

T = TypeVar("T")


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, secret) from an `Authorization: Basic` header, or None if it is not Basic.

    Raises invalid_client for a Basic header that cannot be decoded.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error is one; non-ASCII input raises it too
        raise invalid_client("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed Basic credentials: no ':' separator")
    try:
        return unquote_plus(raw_id, errors="strict"), unquote_plus(raw_secret, errors="strict")
    except UnicodeDecodeError:
        raise invalid_client("malformed Basic credentials: not UTF-8") from None


async def enabled_client(store: ClientLookup, client_id: str) -> Client | None:
    """The client, unless it is unknown or disabled: the one check every endpoint makes, so a
    client disabled in the console is refused everywhere at once."""
    client = await store.get_client(client_id)
    return client if client is not None and client.disabled_at is None else None


class ClientCache:
    """The clients this process authenticated lately, so that a request needs no read of its
    client's row before the transaction that does its work: that read was a good part of an
    introspection's work (docs/performance.md, "Client cache").

    Only for a request whose store call confirms the row before it does the work (see
    `baton.store.base.ClientChanged`, and `confirmed` below): a request that starts after a
    secret was rotated or the client disabled, in any process, is then refused, as without a
    cache. A cached row is never trusted to refuse either: a request it would refuse is decided
    on a fresh read.

    The settings no request confirms (the ID token's algorithm, the subject type, the origins a
    browser app may call from) are read again after `MAX_AGE` seconds, so an edit in the
    console or by `baton client update` reaches every process within that time.
    """

    LIMIT = 1024  # registered clients are few; past this, start again rather than track use
    MAX_AGE = 30.0  # seconds a cached row serves before it is read again

    def __init__(self) -> None:
        self._clients: dict[str, tuple[Client, float]] = {}
        self._on_forget: list[Callable[[], None]] = []

    def on_forget(self, callback: Callable[[], None]) -> None:
        """`callback` runs whenever a client is forgotten (a write in this process changed it):
        the other per-process views of the clients (CORS's `OriginCache`) forget theirs too."""
        self._on_forget.append(callback)

    def get(self, client_id: str) -> Client | None:
        found = self._clients.get(client_id)
        if found is None or time.monotonic() - found[1] > self.MAX_AGE:
            return None
        return found[0]

    def remember(self, client: Client) -> None:
        if len(self._clients) >= self.LIMIT:
            self._clients.clear()
        self._clients[client.id] = (client, time.monotonic())

    def forget(self, client_id: str) -> None:
        """The client changed: its row is read again, and the `on_forget` views forget theirs."""
        self.drop(client_id)
        for callback in self._on_forget:
            callback()

    def drop(self, client_id: str) -> None:
        """The cached row is not trusted to refuse a request: read again, and nothing else.
        Anyone can present a wrong secret for a cached client; that must not also cost the
        next CORS answer a read of every client's origins (`forget`'s callbacks)."""
        self._clients.pop(client_id, None)


async def owner_policy(
    app: Baton, owner_id: str, asking: Client, *, fresh: bool = False
) -> ClientPolicy:
    """The policy of the client that owns a token (its grant's client), for a check another
    client asks about (introspection by a resource server; issue 28). The asking client's own
    when it is the owner; else this process's cached row of the owner, else one read of it,
    kept in the cache like any authenticated client's (a row changed since is caught where it
    matters: every store call that works for a client confirms its row). A cached row may be
    `ClientCache.MAX_AGE` seconds old: a change scheduled meanwhile is seen that much later,
    while one already scheduled takes effect at its instant (`ClientPolicy.at`). With `fresh`
    (a decision: a refresh token's liveness), the owner's row is read, never the cache; the
    asking client's own row was confirmed by the store call that found the token."""
    if asking.id == owner_id:
        return asking.policy
    cached = None if fresh else app.clients.get(owner_id)
    if cached is not None:
        return cached.policy
    owner = await enabled_client(app.store, owner_id)
    if owner is None:
        return NO_POLICY
    app.clients.remember(owner)
    return owner.policy


def presented_credentials(request: Request, form: Form) -> tuple[str, str]:
    """(client_id, secret) as the request presents them; the secret is "" for a public client."""
    header = request.headers.get("authorization")
    basic = basic_credentials(header) if header else None
    if header and basic is None:
        raise invalid_client("unsupported Authorization scheme: use Basic")
    post_secret = form.get("client_secret")
    if basic is not None:
        if post_secret is not None:
            raise invalid_request(
                "use one client authentication method, not two (RFC 6749 section 2.3)"
            )
        client_id, secret = basic
        body_id = form.get("client_id")
        if body_id is not None and body_id != client_id:
            raise invalid_request("client_id in the body differs from the Basic credentials")
        return client_id, secret
    client_id, secret = form.get("client_id") or "", post_secret or ""
    if not client_id:
        raise invalid_client("client authentication required")
    return client_id, secret


async def authenticate(
    request: Request,
    form: Form,
    store: ClientLookup,
    *,
    allow_public: bool = True,
    cache: ClientCache | None = None,
) -> Client:
    """The client the request authenticates as, or `invalid_client`.

    With a `cache`, a client found there is accepted without a read: the caller must confirm it
    in the transaction that does the request's work (`confirmed`).
    """
    client, _ = await _authenticate(request, form, store, allow_public, cache)
    return client


async def _authenticate(
    request: Request, form: Form, store: ClientLookup, allow_public: bool, cache: ClientCache | None
) -> tuple[Client, bool]:
    """The client, and whether it came from `cache` (unconfirmed)."""
    if "client_assertion" in form or "client_assertion_type" in form:
        return await _assertion_client(request, form, store, allow_public, cache)
    client_id, secret = presented_credentials(request, form)
    client: Client | None = None
    if cache is not None:
        cached = cache.get(client_id)
        if cached is not None and cached.registered_via == RegisteredVia.DOCUMENT:
            refreshed = await _current(request, cached)
            if refreshed is not cached:
                # Refreshed: authenticated on the row its fetch just stored, which is the row
                # as the store holds it now; reading it again and asking `_current` about that
                # copy would only fetch the document a second time when it forbids reuse.
                client, cached = refreshed, None
        if cached is not None:
            if refusal(cached, secret, allow_public) is None:
                about_client(request.scope, client_id)  # CORS answers for this client's origins
                return cached, True
            cache.drop(client_id)  # refused only on what the database says now
    if client is None:
        client = await enabled_client(store, client_id)
        if client is None:
            raise invalid_client("unknown client")
        client = await _current(request, client)
    refused = refusal(client, secret, allow_public)
    if refused is not None:
        raise refused
    if cache is not None:
        cache.remember(client)
    about_client(request.scope, client.id)  # CORS answers for this client's origins
    return client, False


async def _current(request: Request, client: Client) -> Client:
    """`client`, or for a document client whose document expired its refreshed row (see
    `ClientDocuments.authenticating`: an invalid document, a denied host, or a private_key_jwt
    client's document that could not be fetched is `invalid_client`; an unreachable one leaves
    a public client's row in use). The very object given back when nothing changed."""
    if client.registered_via != RegisteredVia.DOCUMENT:
        return client
    app: Baton = request.app.state.baton
    try:
        current = await app.documents.authenticating(client)
    except DocumentError as exc:
        raise invalid_client(
            f"the client's metadata document cannot be used: {exc.reason}"
        ) from None
    if current.disabled_at is not None:
        raise invalid_client("unknown client")
    return current


def refusal(client: Client, secret: str, allow_public: bool) -> OAuthError | None:
    """Why `client` does not authenticate with `secret`, or None if it does."""
    if client.token_endpoint_auth_method == PRIVATE_KEY_JWT:
        # Registered to prove possession of its private key (RFC 7591 §2
        # `token_endpoint_auth_method`): a secret or a bare id is not that proof.
        return invalid_client("this client authenticates with private_key_jwt only")
    if client.is_public:
        if secret:
            return invalid_client("public clients have no secret")
        if not allow_public:
            return invalid_client("this endpoint requires a confidential client")
        return None
    if not secret:
        return invalid_client("client authentication required")
    # Server-generated secrets carry 256 bits: a SHA-256 digest is enough, and the comparison
    # of digests runs in constant time.
    expected = client.secret_digest
    if expected is None or not hmac.compare_digest(digest(secret), expected):
        return invalid_client("client authentication failed")
    return None


# -- private_key_jwt (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID Connect Core §9) ------------

# The token endpoint's path (`baton.server.routes`): its URL is an assertion's audience.
TOKEN_PATH = "/token"
# The request scope's key of the replay key of the assertion this request was accepted with: a
# second authentication of the same request (`confirmed` after a `ClientChanged`, or
# `_refuse_if_changed`) is not a replay of it.
_ACCEPTED_ASSERTION = "baton.client_assertion"


class AssertionLedger(Protocol):
    """The client assertions accepted (`baton.store.sql.assertions`)."""

    async def remember_assertion(self, digest: bytes, expires_at: int) -> bool:
        """Records an accepted assertion until `expires_at`; False when it was seen before."""
        ...


def presented_assertion(request: Request, form: Form) -> str:
    """The client assertion of a request that presents one (RFC 7521 §4.2: both
    `client_assertion_type` and `client_assertion`), alone: with Basic credentials or a
    `client_secret` too it is `invalid_request` (RFC 6749 §2.3: "The client MUST NOT use more
    than one authentication method in each request")."""
    if "authorization" in request.headers or "client_secret" in form:
        raise invalid_request(
            "use one client authentication method, not two (RFC 6749 section 2.3)"
        )
    kind = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if kind is None or assertion is None:
        raise invalid_request(
            "client_assertion_type and client_assertion go together (RFC 7521 section 4.2)"
        )
    if kind != JWT_BEARER:
        # RFC 6749 §5.2 invalid_client: "unsupported authentication method".
        raise invalid_client(f"unsupported client_assertion_type: use {JWT_BEARER}")
    return assertion


def assertion_audiences(issuer: str) -> tuple[str, str]:
    """What an assertion's `aud` may name: the token endpoint's URL (RFC 7523 §3 item 3, OIDC
    Core §9 "SHOULD") or the issuer identifier (draft-ietf-oauth-rfc7523bis, which prefers it);
    the same at /introspect and /revoke, whose own URLs are not audiences."""
    return (issuer + TOKEN_PATH, issuer)


async def _assertion_client(
    request: Request, form: Form, store: ClientLookup, allow_public: bool, cache: ClientCache | None
) -> tuple[Client, bool]:
    """The client a `private_key_jwt` request authenticates as, and whether it came from
    `cache`; every refusal of the assertion is `invalid_client` (RFC 7521 §4.2.1)."""
    assertion = presented_assertion(request, form)
    try:
        header, claims = unverified(assertion)
        # RFC 7523 §3 item 2: `sub` is the client's id; RFC 7521 §4.2: a `client_id` sent too
        # "MUST identify the same client as is identified by the client assertion".
        client_id = asserted_client(claims)
    except AssertionProblem as exc:
        raise invalid_client(str(exc)) from None
    named = form.get("client_id")
    if named is not None and named != client_id:
        raise invalid_client("client_id differs from the client assertion's sub")
    cached = cache.get(client_id) if cache is not None else None
    client = cached or await enabled_client(store, client_id)
    if client is None:
        raise invalid_client("unknown client")
    current = await _current(request, client)
    if current is not client:
        client, cached = current, None  # refreshed: the row as the store holds it now
    try:
        replay_key, remember_until = await _accepted(request, client, header, assertion, claims)
    except OAuthError:
        if cached is None or cache is None:
            raise
        # Refused only on what the database says now: the cached row may predate the client's
        # registration for private_key_jwt, or its jwks_uri.
        cache.drop(client_id)
        fresh = await enabled_client(store, client_id)
        if fresh is None:
            raise invalid_client("unknown client") from None
        fresh = await _current(request, fresh)
        if fresh == cached:
            raise
        client, cached = fresh, None
        replay_key, remember_until = await _accepted(request, client, header, assertion, claims)
    if client.is_public and not allow_public:
        raise invalid_client("this endpoint requires a confidential client")
    if request.scope.get(_ACCEPTED_ASSERTION) != replay_key:
        # RFC 7523 §3 item 7: the `jti` is kept as long as the assertion could be accepted, and
        # an assertion seen before is refused; checked last, so that only an assertion that
        # passed every other check is remembered.
        app: Baton = request.app.state.baton
        if not await app.store.remember_assertion(replay_key, remember_until):
            raise invalid_client("the client assertion was used before (jti)")
        request.scope[_ACCEPTED_ASSERTION] = replay_key
    if cache is not None and cached is None:
        cache.remember(client)
    about_client(request.scope, client.id)  # CORS answers for this client's origins
    return client, cached is not None


async def _accepted(
    request: Request, client: Client, header: Header, assertion: str, claims: dict[str, Any]
) -> tuple[bytes, int]:
    """The replay key of `client`'s assertion and until when to keep it, once its claims and
    its signature by one of the client's keys are checked; or `invalid_client`."""
    if client.token_endpoint_auth_method != PRIVATE_KEY_JWT or not client.jwks_uri:
        # A client registered for a secret (or none) may not switch to an assertion: its
        # registration says how it authenticates (RFC 7591 §2 `token_endpoint_auth_method`).
        raise invalid_client("this client is not registered for private_key_jwt")
    app: Baton = request.app.state.baton
    now = app.clock.now()
    try:
        # The claims first (no I/O: junk costs no fetch of the client's keys); they are decoded
        # from the very segment the signature covers, so they are the signed ones once it
        # verifies.
        accepted = check(
            claims,
            client_id=client.id,
            audiences=assertion_audiences(app.settings.issuer_identifier),
            now=now,
        )
        await client_keys(request).verified_payload(assertion, header, client.jwks_uri, now)
    except AssertionProblem as exc:
        raise invalid_client(str(exc)) from None
    return replay_digest(client.id, accepted.jti), accepted.remember_until


CONFIRM_ATTEMPTS = 3


async def confirmed(
    request: Request,
    form: Form,
    app: Baton,
    work: Callable[[Client], Awaitable[T | ClientChanged]],
    *,
    allow_public: bool = True,
    owned: Callable[[T], bool] = lambda _outcome: True,
) -> T:
    """`work` done for the client the request authenticates as, from the process's cache when
    it can be. `work` hands the client to a store call that confirms the client's row before it
    does anything; if the row changed, nothing was done, and the request is authenticated again
    on a fresh read (a disabled client or a rotated secret is then refused) and `work` asked
    again.

    The per-client rate limit charges a confidential client, authenticated, before any work. A
    public client proves nothing by naming its id: its bucket is only looked at before the
    work, and charged after it, if the work found what the request presented to be the
    client's own (`owned`; an `OAuthError` means it was not). Junk naming a public client then
    costs only the sender's address bucket (see `Limits.check_address`)."""
    client, cached = await _authenticate(request, form, app.store, allow_public, app.clients)
    for attempt in range(1, CONFIRM_ATTEMPTS + 1):
        try:
            if attempt == 1:
                await charge_before(app, client)
        except OAuthError:
            if cached:
                # Over its rate limit: a client disabled meanwhile gets `invalid_client` instead.
                await _refuse_if_changed(request, form, app, client.id, allow_public)
            raise
        try:
            outcome = await work(client)
        except OAuthError as exc:
            if not cached or exc.error is not ErrorCode.UNAUTHORIZED_CLIENT:
                # A malformed token, a missing parameter, or what the store decided on a
                # confirmed row: nothing the cached row decided, and no read is spent on it.
                raise
            # Refused on what the cached row says (a grant type its policy leaves out) and no
            # store call confirmed: a cached row is never trusted to refuse (`ClientCache`).
            # On a fresh read, a client disabled meanwhile gets `invalid_client`; one that
            # changed (an operator lifted the restriction) has its request done again on the
            # fresh row, as after a `ClientChanged`; an unchanged one is refused as it was.
            fresh = await _changed_client(request, form, app, client, allow_public)
            if fresh is None:
                raise
            client, cached = fresh, False
            continue
        if not isinstance(outcome, ClientChanged):
            if owned(outcome):
                await charge_after(app, client)
            return outcome
        app.clients.forget(client.id)
        if attempt < CONFIRM_ATTEMPTS:
            client, cached = await _authenticate(
                request, form, app.store, allow_public, app.clients
            )
    # The row changed under each of three fresh reads: an administrator editing the client in
    # a loop. Nothing was done; the client may simply try again.
    raise OAuthError(
        ErrorCode.TEMPORARILY_UNAVAILABLE,
        "the client's registration changed while the request was served; retry shortly",
        503,
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def charge_before(app: Baton, client: Client) -> None:
    """The per-client limit before the work: a confidential client (authenticated) is charged;
    a public client is refused only if real requests of its own emptied its bucket."""
    if client.is_public:
        await app.limits.client_has_room(client.id)
    else:
        await app.limits.check_client(client.id)


async def charge_after(app: Baton, client: Client) -> None:
    """The per-client limit after work that proved the request the client's own: a public
    client's bucket pays now (a confidential one paid before the work)."""
    if client.is_public:
        await app.limits.charge_client(client.id)


async def _changed_client(
    request: Request, form: Form, app: Baton, cached: Client, allow_public: bool
) -> Client | None:
    """The client the request authenticates as on a fresh read when its row differs from the
    `cached` one (forgotten then, and the fresh row cached), None when it is the same; or
    `invalid_client` when the request no longer authenticates."""
    app.clients.drop(cached.id)
    try:
        fresh, _ = await _authenticate(request, form, app.store, allow_public, app.clients)
    except OAuthError:
        app.clients.forget(cached.id)
        raise
    if fresh == cached:
        return None
    app.clients.forget(cached.id)  # the other per-process views (CORS) forget theirs too
    app.clients.remember(fresh)
    return fresh


async def _refuse_if_changed(
    request: Request, form: Form, app: Baton, client_id: str, allow_public: bool
) -> None:
    """Raises `invalid_client` if the request no longer authenticates on a fresh read."""
    try:
        await authenticate(request, form, app.store, allow_public=allow_public)
    except OAuthError:
        app.clients.forget(client_id)
        raise
