"""One verifier for both access-token formats.

- Opaque (`bat_at_...`): RFC 7662 introspection, its `aud` checked like a JWT's, cached until the
  earliest of the token's `exp`, its `revocation_at` and `cache_max_ttl`; every cached answer is
  checked against the revocation index on every request, so a revocation applies as soon as its
  event arrives.
- JWT (RFC 9068, `typ: at+jwt`): signature with the issuer's JWKS (refetched on an unknown
  `kid`), `alg` from an allow-list of asymmetric algorithms (never `none`, never HS*), `iss`,
  `aud`, `exp`/`nbf`/`iat` with a small leeway; then the revocation index (`jti`, `grant_id`).
  Ed25519 signatures verify under RFC 9864's `Ed25519` and under their old name `EdDSA`. The
  JOSE library (joserfc, the `jose` extra) is imported when the verifier is built with
  algorithms; with `algorithms=()` it verifies opaque tokens only, and needs only httpx.

Audience (RFC 8707, RFC 9068 §4, RFC 9700 §2.3): a verifier is built for its API's resource URI
(`audience=`), and accepts a token only if that is in the token's `aud`, whatever its format. A
token issued for no resource carries the issuer as `aud` (or none at all): it is accepted only by
a verifier that names the issuer among its audiences, on purpose.

Superseded tokens (issue 28): a token still valid whose death is already announced before its
`exp` (its companion refresh token was exchanged: the feed's event, or the introspection
answer's `revocation_at`) comes back with `Principal.dies_at` set; the adapters answer it as
`Baton-Token-Superseded: dies-at=<seconds>` (`superseded_header`), and each such use accepted
without asking Baton (from the cache, or a JWT checked locally) is reported to Baton by the
token's SHA-256 digest (`report_token_use`, `baton.resource.reports`). A use that cost an
introspection is not: Baton's `/introspect` counted it already.

While the feed is unhealthy (not yet bootstrapped, or disconnected longer than
`max_disconnect`) the verifier fails closed: it skips its cache and introspects every token.

The network steps are written once, as a generator that yields what it needs (an introspection,
a JWKS refetch); `verify` drives it with a sync httpx client and `averify` with an async one.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import math
import os
import re
import threading
import time
import weakref
from base64 import urlsafe_b64decode
from collections import OrderedDict
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import httpx

from baton.core.tokens import digest as token_digest
from baton.core.tokens import digest_text
from baton.resource.consumer import FeedConsumer
from baton.resource.errors import InvalidToken, VerifierUnavailable, json_object
from baton.resource.index import RevocationEvent, RevocationIndex
from baton.resource.jwks import JwksCache, load_jose
from baton.resource.principal import Principal, from_claims
from baton.resource.reports import TokenUseReporter
from baton.wire import ActiveToken

OPAQUE_PREFIX = "bat_at_"
# EdDSA: RFC 8037's name of the Ed25519 signature, before RFC 9864 (keys made before the
# rename, other issuers).
DEFAULT_ALGORITHMS = ("ES256", "RS256", "EdDSA", "Ed25519")
# Symmetric and unsigned algorithms can never be allowed: a resource server holds no shared
# secret, and a JWKS public key must not double as an HMAC secret (algorithm confusion).
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
AT_JWT_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §4, case-insensitive

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
# Longer than any token Baton issues (and than most servers accept as a whole header): refused
# before it is decoded, parsed or sent to the introspection endpoint.
MAX_TOKEN_LENGTH = 16 * 1024


@dataclass(frozen=True, slots=True)
class _Introspect:
    token: str


@dataclass(frozen=True, slots=True)
class _RefreshKeys:
    kid: str | None
    generation: int


_Step = _Introspect | _RefreshKeys
_Steps = Generator[_Step, Mapping[str, Any] | None, Principal]


@dataclass(slots=True)
class _Cached:
    principal: Principal
    until: float  # wall-clock seconds


def _b64json(segment: str) -> Any:
    """A JWT segment's JSON. Deeply nested JSON (a header of a thousand `[`) makes json.loads
    raise RecursionError, which is no ValueError: an unauthenticated request must not turn it
    into a 500."""
    try:
        return json.loads(urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidToken("malformed token") from exc


def _cache_key(token: str) -> str:
    """The key a token's cached answers are kept under: its SHA-256 digest (hex), the server's
    own digest, which the feed names for opaque tokens. Never the token itself: a cache entry
    outlives the request, and the plaintext is not kept past verification."""
    return token_digest(token).hex()


class Verifier:
    """Verifies Baton access tokens for one resource server (a client created with
    `baton client create --resource-server --resource-uri URI`).

    `audience` is required: the resource server's URI (a string), or several (any of them in a
    token's `aud` will do). Only a verifier whose audiences include the issuer accepts tokens
    issued for no resource (`aud` the issuer, or no `aud`): every such token, for every API.

    `algorithms` are the JWT signatures accepted; they need the `jose` extra (joserfc), and
    without it the constructor raises ImportError. `algorithms=()` accepts opaque tokens only.

    Superseded tokens (issue 28): `superseded_header` (on) has the adapters answer
    `Baton-Token-Superseded: dies-at=<seconds>` to a request whose token is superseded;
    `report_token_use` (on) reports each such use accepted without an introspection to Baton's
    `POST /token-use` (`token_use_endpoint`, default `{issuer}/token-use`), by the token's
    SHA-256 digest only, aggregated per second, every `token_use_interval` seconds and at
    `stop()`, at most `token_use_max_pending` (digest, second) entries buffered (more are
    dropped and counted in `health()`)."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str | Collection[str] | None = None,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        leeway: float = 5.0,
        cache_max_ttl: float = 300.0,
        cache_max_entries: int = 100_000,
        max_disconnect: float = 10.0,
        feed_read_timeout: float = 20.0,
        jwks_min_refresh_interval: float = 1.0,
        jwks_max_age: float = 300.0,
        introspection_endpoint: str | None = None,
        jwks_uri: str | None = None,
        feed_url: str | None = None,
        feed: bool = True,
        superseded_header: bool = True,
        report_token_use: bool = True,
        token_use_endpoint: str | None = None,
        token_use_interval: float = 5.0,
        token_use_max_pending: int = 10_000,
        http_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        feed_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        forbidden = FORBIDDEN_ALGORITHMS & set(algorithms)
        if forbidden:
            raise ValueError(f"algorithms never allowed for access tokens: {sorted(forbidden)}")
        base = issuer.rstrip("/")
        self.issuer = base
        if not audience:
            raise ValueError(
                "audience is required: this API's resource URI (baton client create "
                "--resource-server --resource-uri URI); the issuer only to accept tokens issued "
                "for no resource, which are valid at every API that accepts them"
            )
        named = frozenset([audience] if isinstance(audience, str) else audience)
        if not all(isinstance(item, str) and item for item in named):
            raise ValueError("audience must be a URI or a collection of URIs")
        self.audiences = named
        # Tokens for no resource name the issuer (or nothing) as their audience.
        self.accepts_issuer = bool({issuer, base} & named)
        self.algorithms = frozenset(algorithms)
        if self.algorithms:
            load_jose()  # fail at start-up, not at the first JWT, when the extra is missing
        self.leeway = leeway
        self.cache_max_ttl = cache_max_ttl
        self.cache_max_entries = cache_max_entries
        self.introspection_endpoint = introspection_endpoint or base + "/introspect"
        self._auth = (client_id, client_secret)
        self._timeout = http_timeout
        self._transport = transport
        self._async_transport = async_transport
        self._clock = clock
        self.index = RevocationIndex()
        self.jwks = JwksCache(
            jwks_uri or base + "/jwks.json",
            min_refresh_interval=jwks_min_refresh_interval,
            max_age=jwks_max_age,
            monotonic=monotonic,
        )
        self.feed: FeedConsumer | None = (
            FeedConsumer(
                feed_url or base + "/revocations",
                self._auth,
                self.index,
                max_disconnect=max_disconnect,
                read_timeout=feed_read_timeout,
                transport=feed_transport,
                monotonic=monotonic,
                wall_clock=clock,
            )
            if feed
            else None
        )
        self.superseded_header = superseded_header
        self.reports: TokenUseReporter | None = (
            TokenUseReporter(
                token_use_endpoint or base + "/token-use",
                self._auth,
                interval=token_use_interval,
                max_pending=token_use_max_pending,
                timeout=http_timeout,
                transport=transport,
            )
            if report_token_use
            else None
        )
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._grant_tokens: dict[str, set[str]] = {}
        self._cache_lock = threading.Lock()
        self._sync_client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncClient
        ] = weakref.WeakKeyDictionary()
        self.introspections = 0
        self.index.subscribe(self._evict)

    @classmethod
    def from_env(cls, prefix: str = "BATON_", **options: Any) -> Verifier:
        """`BATON_ISSUER`, `BATON_RS_ID`, `BATON_RS_SECRET`, `BATON_AUDIENCE` (this API's resource
        URI; several, space-separated; the issuer only to accept tokens issued for no resource)."""
        audience = os.environ.get(prefix + "AUDIENCE", "").split()
        if not audience and "audience" not in options:
            raise ValueError(
                f"{prefix}AUDIENCE is required: this API's resource URI (the issuer only to "
                "accept tokens issued for no resource)"
            )
        options.setdefault("audience", audience)
        return cls(
            os.environ[prefix + "ISSUER"],
            os.environ[prefix + "RS_ID"],
            os.environ[prefix + "RS_SECRET"],
            **options,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, wait: float = 0.0) -> None:
        """Starts the feed consumer's thread; with `wait`, waits up to that many seconds for
        its bootstrap. Until then (or without a feed) every token is introspected. Also starts
        the thread that reports superseded tokens' uses."""
        if self.reports is not None:
            self.reports.start()
        if self.feed is not None:
            self.feed.start()
            if wait:
                self.feed.wait_synced(wait)

    def stop(self) -> None:
        """Stops the feed, and sends the token use reports still buffered (a last POST, at most
        `http_timeout`)."""
        if self.feed is not None:
            self.feed.stop()
        if self.reports is not None:
            self.reports.stop()
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None

    def feed_healthy(self) -> bool:
        return self.feed is not None and self.feed.healthy()

    def health(self) -> dict[str, Any]:
        """A report for a health endpoint: `fail_closed` is true while every request costs an
        introspection because the feed cannot be trusted."""
        healthy = self.feed_healthy()
        return {
            "mode": "cached" if healthy else "fail_closed",
            "fail_closed": not healthy,
            "feed": self.feed.health() if self.feed is not None else None,
            "cache_entries": len(self._cache),
            "introspections": self.introspections,
            "jwks_keys": self.jwks.kids,
            "jwks_fetches": self.jwks.fetches,
            "token_use_reports": self.reports.health() if self.reports is not None else None,
        }

    # -- drivers -----------------------------------------------------------------------------

    def verify(self, token: str, *scopes: str) -> Principal:
        """Verifies a token (sync). Raises `InvalidToken`, `InsufficientScope` or
        `VerifierUnavailable`."""
        steps = self._steps(token)
        try:
            step = next(steps)
            while True:
                reply: Mapping[str, Any] | None = None
                if isinstance(step, _Introspect):
                    reply = self._introspect_sync(step.token)
                else:
                    self.jwks.refresh_sync(self._client(), step.kid, step.generation)
                step = steps.send(reply)
        except StopIteration as done:
            principal: Principal = done.value
        return principal.require(*scopes)

    async def averify(self, token: str, *scopes: str) -> Principal:
        """Verifies a token (async), like `verify`."""
        steps = self._steps(token)
        try:
            step = next(steps)
            while True:
                reply: Mapping[str, Any] | None = None
                if isinstance(step, _Introspect):
                    reply = await self._introspect_async(step.token)
                else:
                    await self.jwks.refresh_async(self._aclient(), step.kid, step.generation)
                step = steps.send(reply)
        except StopIteration as done:
            principal: Principal = done.value
        return principal.require(*scopes)

    def _client(self) -> httpx.Client:
        if self._sync_client is None:
            self._sync_client = httpx.Client(
                auth=self._auth, timeout=self._timeout, transport=self._transport
            )
        return self._sync_client

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = self._async_clients[loop] = httpx.AsyncClient(
                auth=self._auth, timeout=self._timeout, transport=self._async_transport
            )
        return client

    def _introspect_sync(self, token: str) -> Mapping[str, Any]:
        self.introspections += 1
        try:
            response = self._client().post(self.introspection_endpoint, data={"token": token})
        except httpx.HTTPError as exc:
            raise VerifierUnavailable(f"introspection unreachable: {exc}") from exc
        return self._introspection_body(response)

    async def _introspect_async(self, token: str) -> Mapping[str, Any]:
        self.introspections += 1
        try:
            response = await self._aclient().post(
                self.introspection_endpoint, data={"token": token}
            )
        except httpx.HTTPError as exc:
            raise VerifierUnavailable(f"introspection unreachable: {exc}") from exc
        return self._introspection_body(response)

    @staticmethod
    def _introspection_body(response: httpx.Response) -> Mapping[str, Any]:
        return json_object(response, "introspection answer")

    # -- the steps, shared by both drivers ---------------------------------------------------

    def _steps(self, token: str) -> _Steps:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed token: too long")
        if token.startswith(OPAQUE_PREFIX):
            return (yield from self._opaque(token))
        if _JWT_SHAPE.match(token):
            return (yield from self._jwt(token))
        raise InvalidToken("malformed token")

    def _cached(self, key: str, now: float) -> Principal | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if now >= entry.until:
            self._drop(key)
            return None
        return entry.principal

    def _dead(self, principal: Principal, digest: str | None, now: float) -> bool:
        return self.index.is_dead(
            now, jti=principal.jti, digest=digest, grant_id=principal.grant_id
        )

    def _opaque(self, token: str) -> _Steps:
        now = self._clock()
        # The server's own digest, in hex: what the feed's `token_digest` names.
        digest = _cache_key(token)
        if self.index.is_dead(now, digest=digest) or digest in self._negative:
            raise InvalidToken("the access token is not active")
        trusted = self.feed_healthy()
        if trusted:
            principal = self._cached(digest, now)
            if principal is not None:
                if self._dead(principal, digest, now):
                    self._drop(digest)
                    raise InvalidToken("the access token was revoked")
                revocation_at = principal.claims.get("revocation_at")
                return self._used(principal, digest, digest, now, revocation_at, asked=False)
        body = yield _Introspect(token)
        assert body is not None
        now = self._clock()
        if body.get("active") is not True:
            self._remember_inactive(digest)
            raise InvalidToken("the access token is not active")
        body = cast(ActiveToken, body)  # what the server sends; its members are checked as read
        try:
            principal = from_claims(body, "opaque")
        except ValueError as exc:
            raise VerifierUnavailable(f"introspection answer unusable: {exc}") from exc
        if not self._for_us(body.get("aud"), introspected=True):
            # Never for this API, whoever asks again: remembered, like an inactive token.
            self._remember_inactive(digest)
            raise InvalidToken("the token is not for this audience")
        if self._dead(principal, digest, now):
            raise InvalidToken("the access token was revoked")
        revocation_at = body.get("revocation_at")
        until = min(float(principal.expires_at), now + self.cache_max_ttl)
        if isinstance(revocation_at, int | float) and not isinstance(revocation_at, bool):
            until = min(until, float(revocation_at))
        self._store(digest, principal, until)
        return self._used(principal, digest, digest, now, revocation_at, asked=True)

    def _jwt(self, token: str) -> _Steps:
        now = self._clock()
        key = _cache_key(token)
        if key in self._negative:
            raise InvalidToken("the access token was revoked")
        trusted = self.feed_healthy()
        principal = self._cached(key, now) if trusted else None
        if principal is None:
            principal = yield from self._check_jwt(token, now)
            if trusted:
                self._store(key, principal, principal.expires_at + self.leeway)
        if self._dead(principal, None, now):
            self._drop(key)
            raise InvalidToken("the access token was revoked")
        revocation_at = None
        if not trusted:
            body = yield _Introspect(token)
            assert body is not None
            if body.get("active") is not True:
                raise InvalidToken("the access token is not active")
            revocation_at = body.get("revocation_at")
        # As in `_dead` above, the index is asked for a JWT's death by its `jti`.
        return self._used(principal, None, key, now, revocation_at, asked=not trusted)

    def _used(
        self,
        principal: Principal,
        feed_digest: str | None,
        key: str,
        now: float,
        revocation_at: Any,
        *,
        asked: bool,
    ) -> Principal:
        """The principal of a token accepted at `now`, with `dies_at` when it is superseded:
        its death announced before `exp`, by the feed (its `jti`, or `feed_digest`: its
        companion was exchanged) or by the introspection answer's `revocation_at`. A grant
        revoked for a future instant is not a supersession.

        Such a use is reported to Baton by the token's digest (`key`, the SHA-256 in hex, sent
        as base64url), unless this request `asked` Baton's `/introspect`: Baton counted that
        use there already (issue 28), and reporting it too would count it twice."""
        dies = self.index.death(jti=principal.jti, digest=feed_digest)
        if isinstance(revocation_at, int | float) and not isinstance(revocation_at, bool):
            dies = float(revocation_at) if dies is None else min(dies, float(revocation_at))
        if dies is None or dies <= now or dies >= principal.expires_at:
            return principal
        if self.reports is not None and not asked:
            self.reports.record(digest_text(bytes.fromhex(key)), now)
        return replace(principal, dies_at=math.ceil(dies))

    def _check_jwt(self, token: str, now: float) -> _Steps:
        head, payload, _ = token.split(".")
        header = _b64json(head)
        if not isinstance(header, dict):
            raise InvalidToken("malformed token")
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(f"algorithm not allowed: {alg}")
        if not isinstance(typ, str) or typ.lower() not in AT_JWT_TYPES:
            raise InvalidToken("not an access token (typ must be at+jwt)")
        if "crit" in header:
            raise InvalidToken("unsupported critical header")
        if not isinstance(kid, str):
            raise InvalidToken("the token names no key (kid)")
        key = self.jwks.get(kid)
        if key is None or self.jwks.stale():
            yield _RefreshKeys(kid, self.jwks.generation)
            key = self.jwks.get(kid)
            if key is None:
                raise InvalidToken("unknown signing key")
        from baton.core.jwa import key_allows  # loaded by __init__, with resource.jose
        from baton.resource.jose import signature_valid

        if not key_allows(key, alg):
            raise InvalidToken("the key is not for this algorithm")
        if not signature_valid(token, key, alg):
            raise InvalidToken("bad signature")
        claims = _b64json(payload)
        if not isinstance(claims, dict):
            raise InvalidToken("malformed claims")
        self._check_claims(claims, now)
        try:
            return from_claims(claims, "jwt")
        except ValueError as exc:
            raise InvalidToken("missing claims") from exc

    def _check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        if not self._for_us(claims.get("aud")):
            raise InvalidToken("the token is not for this audience")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        for name, value in (("exp", exp), ("iat", iat)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidToken(f"missing claim: {name}")
        assert isinstance(exp, int | float) and isinstance(iat, int | float)
        if now >= exp + self.leeway:
            raise InvalidToken("the access token expired")
        if iat > now + self.leeway:
            raise InvalidToken("the access token was issued in the future")
        if isinstance(nbf, int | float) and nbf > now + self.leeway:
            raise InvalidToken("the access token is not valid yet")
        for name in ("jti", "client_id", "sub"):
            if not isinstance(claims.get(name), str):
                raise InvalidToken(f"missing claim: {name}")

    def _for_us(self, aud: Any, *, introspected: bool = False) -> bool:
        """RFC 9068 §4: the token's `aud` "contains a resource indicator value corresponding to
        an identifier the resource server expects for itself". An introspection answer without
        `aud` (RFC 7662 §2.2 makes it optional; an opaque token issued before audiences were
        recorded) is a token for no resource, like one whose `aud` is the issuer: only for a
        verifier that accepts the issuer. A JWT must carry `aud` (RFC 9068 §2.2)."""
        if aud is None:
            return introspected and self.accepts_issuer
        named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        return any(isinstance(item, str) and self._ours(item) for item in named)

    def _ours(self, audience: str) -> bool:
        if audience in self.audiences:
            return True
        return self.accepts_issuer and audience.rstrip("/") == self.issuer

    # -- cache -------------------------------------------------------------------------------

    def _store(self, key: str, principal: Principal, until: float) -> None:
        with self._cache_lock:
            self._cache[key] = _Cached(principal, until)
            if principal.grant_id is not None:
                self._grant_tokens.setdefault(principal.grant_id, set()).add(key)
            while len(self._cache) > self.cache_max_entries:
                old_key, old = self._cache.popitem(last=False)
                self._forget_grant_key(old.principal.grant_id, old_key)

    def _drop(self, key: str) -> None:
        with self._cache_lock:
            entry = self._cache.pop(key, None)
            if entry is not None:
                self._forget_grant_key(entry.principal.grant_id, key)

    def _forget_grant_key(self, grant_id: str | None, key: str) -> None:
        if grant_id is None:
            return
        keys = self._grant_tokens.get(grant_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._grant_tokens[grant_id]

    def _remember_inactive(self, key: str) -> None:
        # An inactive token never comes back: remember a bounded number of them, so a client
        # retrying a dead token does not cost an introspection each time.
        with self._cache_lock:
            self._negative[key] = self._clock()
            while len(self._negative) > 10_000:
                self._negative.popitem(last=False)

    def _evict(self, event: RevocationEvent) -> None:
        """Feed listener: drops cached answers the event names once it is effective (a future
        event stays in the index, which every cache hit consults)."""
        if event.effective_at > self._clock():
            return
        with self._cache_lock:
            keys = set(self._grant_tokens.get(event.grant_id or "", ()))
            if event.kind == "access_token":  # that token only, not its siblings
                keys = {
                    key
                    for key in keys
                    if (entry := self._cache.get(key)) is not None
                    and entry.principal.jti == event.jti
                }
        if event.token_digest:
            keys.add(event.token_digest)
        for key in keys:
            self._drop(key)
            self._remember_inactive(key)  # known dead: no introspection for it again
