"""The public keys of `private_key_jwt` clients (RFC 7523 §2.2), read from each client's
`jwks_uri` (RFC 7591 §2) and cached per URL, and the signature check of their assertions.

A key set is kept as long as its response's HTTP cache headers say (`Cache-Control: max-age`,
else `Expires`), within `MIN_TTL` and `MAX_TTL`: a key set that asks not to be cached is still
kept `MIN_TTL` seconds, so that a busy client does not cost a fetch per request, and none is kept
past `MAX_TTL`, so that a key the client withdrew stops verifying within that time. An assertion
whose `kid` the cached set lacks (a client that rotated its keys) fetches the set once more, at
most once per `REFETCH_INTERVAL` per URL, so that junk `kid`s cost the client's key server little;
then it is refused. At most `LIMIT` URLs are cached; past that the cache starts again.

Only asymmetric signatures verify (`baton.core.client_assertion.ASYMMETRIC_ALGS`), each with a
registry that allows that one algorithm (`baton.core.jwa.registry`), with a public key the set
publishes for signing (`use` absent or `sig`) and for that algorithm (`key_allows`). Private
members a key set should never carry are dropped (`baton.resource.jose.public_key`).

The documents are read by a `KeySetSource`: `HttpKeySetSource` here, until the SSRF-safe fetcher
of client metadata documents (`baton.server.runtime.fetching`) serves them.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import httpx
from joserfc import jws
from joserfc.errors import JoseError
from starlette.requests import Request

from baton.core.client_assertion import AssertionProblem, Header
from baton.core.jwa import key_allows, registry
from baton.resource.jose import PublicKey, public_key

DEFAULT_TTL = 300  # seconds a key set without cache headers is kept
MIN_TTL = 60
MAX_TTL = 3600
REFETCH_INTERVAL = 10  # at most one fetch per this many seconds per URL for an unknown kid
LIMIT = 1024  # URLs cached; past this, start again rather than track use
MAX_DOCUMENT = 64 * 1024  # bytes of a key set
TIMEOUT = 5.0  # seconds for the whole fetch

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|=|$)", re.IGNORECASE)


class KeySetUnavailable(Exception):
    """The key set could not be read (unreachable, refused, not JSON): the description says
    why, for the client's `invalid_client`."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A JSON document read from a URL and the seconds its cache headers let it be kept (None:
    they say nothing)."""

    document: Any
    max_age: int | None


class KeySetSource(Protocol):
    async def fetch_json(self, url: str) -> Fetched:
        """The JSON document at `url`, or `KeySetUnavailable`."""
        ...


def cache_lifetime(headers: Mapping[str, str], now: float | None = None) -> int | None:
    """The seconds a response may be kept by its headers (RFC 9111 §4.2.1: `max-age`, else
    `Expires` less `Date`); 0 for `no-store` or `no-cache`; None when they say nothing."""
    control = headers.get("cache-control", "")
    if _NO_CACHE.search(control):
        return 0
    found = _MAX_AGE.search(control)
    if found is not None:
        return int(found.group(1))
    expires = headers.get("expires")
    if expires is None:
        return None
    try:
        expires_at = email.utils.parsedate_to_datetime(expires).timestamp()
        said_date = headers.get("date")
        date = (
            email.utils.parsedate_to_datetime(said_date).timestamp()
            if said_date
            else (time.time() if now is None else now)
        )
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0  # RFC 9111 §5.3: an invalid Expires means "already expired"
    return max(0, int(expires_at - date))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class HttpKeySetSource:
    """Reads key sets over HTTPS (plain HTTP only on loopback with `allow_private`, for
    development and tests): no redirect, at most `MAX_DOCUMENT` bytes, within `TIMEOUT`.

    An interim reader: the address checks against private networks (SSRF) belong to the
    shared fetcher of client metadata documents, which replaces it."""

    allow_private: bool = False
    timeout: float = TIMEOUT
    transport: httpx.AsyncBaseTransport | None = None

    async def fetch_json(self, url: str) -> Fetched:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme != "https" and not (
            parts.scheme == "http" and self.allow_private and _loopback(host)
        ):
            raise KeySetUnavailable("the client's jwks_uri is not an https URL")
        if not self.allow_private and _private_literal(host):
            raise KeySetUnavailable("the client's jwks_uri names a private address")
        try:
            with anyio.fail_after(self.timeout):
                async with (
                    httpx.AsyncClient(
                        timeout=self.timeout, transport=self.transport, follow_redirects=False
                    ) as client,
                    client.stream("GET", url, headers={"Accept": "application/json"}) as response,
                ):
                    if response.status_code != 200:
                        raise KeySetUnavailable(
                            f"the client's jwks_uri answered {response.status_code}"
                        )
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_DOCUMENT:
                            raise KeySetUnavailable("the client's key set is too large")
                    headers = dict(response.headers)
        except (TimeoutError, httpx.HTTPError):
            raise KeySetUnavailable("the client's jwks_uri could not be read") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise KeySetUnavailable("the client's key set is not JSON") from None
        return Fetched(document, cache_lifetime(headers))


def _private_literal(host: str) -> bool:
    """Whether `host` is an IP address literal outside the public internet (a name is left to
    the shared fetcher's resolution checks)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host == "localhost"
    return not address.is_global


@dataclass
class _KeySet:
    keys: list[PublicKey]
    kids: frozenset[str]
    fetched_at: int
    expires_at: int


def _signing_keys(document: Any) -> list[PublicKey]:
    """The public signing keys of a JWK Set (RFC 7517 §5), or `KeySetUnavailable`."""
    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list):
        raise KeySetUnavailable("the client's jwks_uri serves no JWK Set")
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
    fetches: int = 0  # key sets read, for tests

    async def _fetch(self, url: str, now: int) -> _KeySet:
        self.fetches += 1
        fetched = await self.source.fetch_json(url)
        keys = _signing_keys(fetched.document)
        ttl = DEFAULT_TTL if fetched.max_age is None else fetched.max_age
        ttl = min(max(ttl, MIN_TTL), MAX_TTL)
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
                if found is None:
                    raise
                # The set could not be read again: the one read before serves a little longer
                # rather than lock the client out while its key server hiccups.
                found.expires_at = now + MIN_TTL
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


def _verify(assertion: str, header: Header, keys: list[PublicKey]) -> bytes | None:
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
        source = HttpKeySetSource(allow_private=settings.client_documents_allow_private)
        found = state.client_keys = ClientKeys(source)
    return found
