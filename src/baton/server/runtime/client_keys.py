"""The public keys of `private_key_jwt` clients (RFC 7523 §2.2), read from each client's
`jwks_uri` (RFC 7591 §2) and cached per URL, and the signature check of their assertions.

A key set is kept as long as its response's HTTP cache headers say (`Cache-Control: max-age`,
else `Expires`), within `MIN_TTL` and `MAX_TTL`: a key set that asks not to be cached is still
kept `MIN_TTL` seconds, so that a busy client does not cost a fetch per request, and none is kept
past `MAX_TTL`, so that a key the client withdrew stops verifying within that time. An assertion
whose `kid` the cached set lacks (a client that rotated its keys) fetches the set once more, at
most once per `REFETCH_INTERVAL` per URL, so that junk `kid`s cost the client's key server little;
then it is refused. A key server that could not be read is not asked again for
`REFETCH_INTERVAL` seconds either; a set that cannot be read again is still used, `MIN_TTL` at a
time, but never more than `MAX_TTL` after its last successful read (a client that withdrew a
compromised key, even by taking its key set down, is not held to it forever). Concurrent
requests needing one URL's set share one fetch. At most `LIMIT` URLs are cached; past that the
cache starts again.

Why a key set could not be read (its host's addresses, a refused connection) is logged, not
told to the client: the client chose the URL, and the difference would map the server's
network for it.

Only asymmetric signatures verify (`baton.core.client_assertion.ASYMMETRIC_ALGS`), each with a
registry that allows that one algorithm (`baton.core.jwa.registry`), with a public key the set
publishes for signing (`use` absent or `sig`) and for that algorithm (`key_allows`). Private
members a key set should never carry are dropped (`baton.resource.jose.public_key`).

The documents are read by a `KeySetSource`: `SafeKeySetSource`, through the fetcher of the URLs
untrusted parties give (`baton.server.runtime.fetching`: https only, public addresses only unless
`client_documents_allow_private`, no redirect, bounded in time and size; RFC 7591 §5 warns of
a `jwks_uri` used against the server's own network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from joserfc import jws
from joserfc.errors import JoseError
from starlette.requests import Request

from baton.core.client_assertion import AssertionProblem, Header
from baton.core.jwa import JoseKey, key_allows, registry
from baton.logs import get_logger
from baton.server.runtime import fetching

DEFAULT_TTL = 300  # seconds a key set without cache headers is kept
MIN_TTL = 60
MAX_TTL = 3600
REFETCH_INTERVAL = 10  # at most one fetch per this many seconds per URL for an unknown kid
LIMIT = 1024  # URLs cached; past this, start again rather than track use
MAX_DOCUMENT = 64 * 1024  # bytes of a key set (a few RSA keys are several KiB)
TIMEOUT = 5.0  # seconds for the whole fetch

log = get_logger("baton.client_keys")


class KeySetUnavailable(Exception):
    """The key set could not be read (unreachable, refused, not JSON): the description says
    why, for the client's `invalid_client`."""


@dataclass(frozen=True, slots=True)
class KeySetDocument:
    """A JSON document read from a URL, and the seconds its HTTP cache headers let it be kept
    (RFC 9111 §4.2.1; 0: not at all)."""

    document: Any
    lifetime: int


class KeySetSource(Protocol):
    async def fetch_json(self, url: str) -> KeySetDocument:
        """The JSON document at `url`, or `KeySetUnavailable`."""
        ...


@dataclass(frozen=True)
class SafeKeySetSource:
    """Key sets read by `fetching.fetch` (plain http on loopback only with `allow_private`)."""

    allow_private: bool = False

    async def fetch_json(self, url: str) -> KeySetDocument:
        try:
            fetched = await fetching.fetch(
                url, allow_private=self.allow_private, timeout=TIMEOUT, max_bytes=MAX_DOCUMENT
            )
        except fetching.FetchError as exc:
            log.warning("a client's jwks_uri could not be read", url=url, reason=exc.reason)
            raise KeySetUnavailable("the client's jwks_uri could not be read") from None
        try:
            document = json.loads(fetched.body)
        except ValueError:
            raise KeySetUnavailable("the client's key set is not JSON") from None
        lifetime = fetched.lifetime(default=DEFAULT_TTL, floor=MIN_TTL, ceiling=MAX_TTL)
        return KeySetDocument(document, lifetime)


@dataclass
class _KeySet:
    keys: list[JoseKey]
    kids: frozenset[str]
    fetched_at: int
    expires_at: int


def _signing_keys(document: Any) -> list[JoseKey]:
    """The public signing keys of a JWK Set (RFC 7517 §5), or `KeySetUnavailable`."""
    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list):
        raise KeySetUnavailable("the client's jwks_uri serves no JWK Set")
    # Not at start-up: importing `baton.resource` loads its HTTP client (httpx) too.
    from baton.resource.jose import public_key

    found = []
    for member in members:
        if not isinstance(member, dict) or member.get("use") not in (None, "sig"):
            continue
        key = public_key(member)
        if key is not None:
            found.append(key)
    return found


@dataclass
class ClientKeys:
    """The key sets of `private_key_jwt` clients this process has read, by `jwks_uri`."""

    source: KeySetSource
    _sets: dict[str, _KeySet] = field(default_factory=dict)
    # URLs whose last read failed: (until when it is not tried again, why it failed).
    _failed: dict[str, tuple[int, str]] = field(default_factory=dict)
    # The reads under way, by URL: concurrent requests share one.
    _flights: fetching.SingleFlight[str, _KeySet] = field(default_factory=fetching.SingleFlight)
    fetches: int = 0  # key sets read, for tests

    async def _fetch(self, url: str, now: int) -> _KeySet:
        failed = self._failed.get(url)
        if failed is not None and failed[0] > now:
            # A key server that failed is not asked again for `REFETCH_INTERVAL` seconds: junk
            # assertions naming its client cost one fetch per interval, not one per request.
            raise KeySetUnavailable(failed[1])
        return await self._flights.run(url, lambda: self._read(url, now))

    async def _read(self, url: str, now: int) -> _KeySet:
        self.fetches += 1
        try:
            fetched = await self.source.fetch_json(url)
            keys = _signing_keys(fetched.document)
        except KeySetUnavailable as exc:
            if len(self._failed) >= LIMIT:
                self._failed.clear()
            self._failed[url] = (now + REFETCH_INTERVAL, str(exc))
            raise
        self._failed.pop(url, None)
        # A set that asks not to be kept is still kept `MIN_TTL`: each request would fetch it.
        ttl = min(max(fetched.lifetime, MIN_TTL), MAX_TTL)
        kids = frozenset(kid for key in keys if isinstance(kid := key.kid, str))
        found = _KeySet(keys, kids, now, now + ttl)
        if len(self._sets) >= LIMIT and url not in self._sets:
            self._sets.clear()
        self._sets[url] = found
        return found

    async def _current(self, url: str, now: int) -> _KeySet:
        found = self._sets.get(url)
        if found is None or found.expires_at <= now:
            try:
                return await self._fetch(url, now)
            except KeySetUnavailable:
                last_good = found.fetched_at + MAX_TTL if found is not None else now
                if found is None or last_good <= now:
                    # Never used more than MAX_TTL after it was last read: a client's key
                    # server that withdrew a key (404) must not keep it accepted.
                    raise
                # The set could not be read again: the one read before serves a little longer
                # rather than lock the client out while its key server hiccups.
                found.expires_at = min(now + MIN_TTL, last_good)
        return found

    async def verified_payload(self, assertion: str, header: Header, url: str, now: int) -> bytes:
        """The payload of `assertion`, whose signature a key of the set at `url` checks, or
        `AssertionProblem`. An unknown `kid` (or, without a `kid`, no key that checks it) reads
        the set once more, rate-limited (`REFETCH_INTERVAL`), in case the client rotated."""
        try:
            keys = await self._current(url, now)
            payload = _verify(assertion, header, keys.keys)
            if payload is not None:
                return payload
            if header.kid is not None and header.kid in keys.kids:
                # The key is known and did not verify: a bad signature, not a rotation.
                raise AssertionProblem("the client assertion's signature is not valid")
            if now - keys.fetched_at < REFETCH_INTERVAL:
                raise AssertionProblem(_no_key(header))
            keys = await self._fetch(url, now)
        except KeySetUnavailable as exc:
            raise AssertionProblem(str(exc)) from None
        payload = _verify(assertion, header, keys.keys)
        if payload is None:
            raise AssertionProblem(_no_key(header))
        return payload


def _no_key(header: Header) -> str:
    if header.kid is None:
        return "no key of the client's key set verifies the client assertion"
    return "the client's key set has no key with the client assertion's kid"


def _verify(assertion: str, header: Header, keys: list[JoseKey]) -> bytes | None:
    """The payload, if a key of `keys` with the header's `kid` (any, without one) that may
    check its `alg` verifies it."""
    for key in keys:
        if header.kid is not None and key.kid != header.kid:
            continue
        if not key_allows(key, header.alg):
            continue
        try:
            # The registry allows the header's alg alone (asymmetric: `unverified` checked), so
            # the key is never taken as an HMAC secret.
            return jws.deserialize_compact(assertion, key, registry=registry(header.alg)).payload
        except (JoseError, ValueError, TypeError):
            continue
    return None


def client_keys(request: Request) -> ClientKeys:
    """This app's `ClientKeys` (one per app, made at first use); a test may set
    `app.state.client_keys` to one with another source."""
    state = request.app.state
    found = getattr(state, "client_keys", None)
    if not isinstance(found, ClientKeys):
        settings = state.baton.settings
        source = SafeKeySetSource(allow_private=settings.client_documents_allow_private)
        found = state.client_keys = ClientKeys(source)
    return found
