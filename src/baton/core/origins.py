"""Which browser origins may read the answers of the endpoints browser apps call (CORS, the
Fetch standard): the rule, without I/O. `baton.server.runtime.cors` applies it to requests.

A client's allowed origins are its `allowed_origins` when an operator set them, else the origins
(`scheme://host[:port]`, RFC 6454 §4) of its https redirect URIs and any port of its http loopback
ones:

- An SPA registered with `https://app.example.com/callback` is served from
  `https://app.example.com`: that origin, and no other, calls the token endpoint.
- A client with an http loopback redirect URI (`http://127.0.0.1/cb`) may be called from
  `http://127.0.0.1` on ANY port (and `http://[::1]` for an `[::1]` one). RFC 8252 §7.3 already
  lets its redirect go to any port of that address, so the code can already reach any program
  listening on this machine; the page that reads the token answer being on another port (a dev
  server on :5173 redirecting to a listener on :8400) gives nothing more to anyone. A web page
  from elsewhere cannot have a loopback origin: an origin is the host the browser was asked for
  (DNS rebinding yields `http://evil.example:port`, not `http://127.0.0.1`), so only a program on
  the user's own machine serves one, and such a program need not use a browser to call us.
- Private-use scheme redirect URIs (`com.example.app:/cb`) give no origin: a native app makes
  its requests itself, outside any browser's same-origin policy.

`allowed_origins` set explicitly replaces all of that, loopback included: each entry is one exact
origin (normalized as a browser serializes it: lower-case, default port left out).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from baton.core.redirects import LOOPBACK

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A serialized origin as a browser sends it in `Origin` (Fetch §3.1, RFC 6454 §6.1): scheme, host
# (a name, an IPv4 literal or a bracketed IPv6 one) and a port only when not the default.
_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::([1-9][0-9]{0,4}))?")


def origin_of(uri: str) -> str | None:
    """The serialized origin (RFC 6454 §6.1) of an http(s) URI, or None for any other URI (or
    one without a host, or with user information)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def origin_problem(value: str) -> str | None:
    """Why `value` may not be one of a client's `allowed_origins`, or None when it may: an origin
    as a browser sends it (RFC 6454 §6.1: scheme "://" host [":" port], nothing more, never `*`
    or `null`), https, or http on the loopback addresses only."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or parts.scheme not in _DEFAULT_PORTS:
        return f"allowed origin {value!r} must be scheme://host[:port], e.g. https://app.example"
    if parts.path or parts.query or parts.fragment or "?" in value or "#" in value:
        return (
            f"allowed origin {value!r} must have no path, query or fragment: scheme://host[:port]"
        )
    if "@" in parts.netloc:
        return f"allowed origin {value!r} must not carry user information"
    if not value.isascii() or any(c.isspace() for c in value):
        return f"allowed origin {value!r} must be printable ASCII without spaces"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return (
            f"allowed origin {value!r} must use https: plain http is allowed only for the "
            "loopback addresses 127.0.0.1 and [::1]"
        )
    return None


def _loopback_host(origin: str) -> str | None:
    """`127.0.0.1` or `[::1]` for an http origin on that loopback literal (any port), and
    `localhost`: only a native app no operator registered holds an http://localhost redirect
    URI (`baton.core.redirects`), and browsers resolve the name to the loopback interface alone
    (RFC 6761 §6.3), so the reasoning of the loopback literals holds for it."""
    found = _ORIGIN.fullmatch(origin)
    if found is None or found.group(1) != "http":
        return None
    host = found.group(2)
    return host if host.strip("[]") in LOOPBACK or host == "localhost" else None


class OriginSource(NamedTuple):
    """What the store holds that decides one enabled client's origins."""

    client_id: str
    redirect_uris: tuple[str, ...]
    allowed_origins: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Origins:
    """A set of origins: exact ones, and loopback hosts any of whose http ports is allowed."""

    exact: frozenset[str] = frozenset()
    loopback: frozenset[str] = frozenset()  # "127.0.0.1", "[::1]"

    def allows(self, origin: str) -> bool:
        """Whether `origin` (an `Origin` header's value, as the browser serialized it) is in."""
        if origin in self.exact:
            return True
        return bool(self.loopback) and _loopback_host(origin) in self.loopback

    def __or__(self, other: Origins) -> Origins:
        return Origins(self.exact | other.exact, self.loopback | other.loopback)


def client_origins(redirect_uris: Sequence[str], allowed_origins: Sequence[str] | None) -> Origins:
    """The origins that may call the token endpoints as this client (see the module)."""
    if allowed_origins is not None:
        return Origins(frozenset(o for o in map(origin_of, allowed_origins) if o is not None))
    exact: set[str] = set()
    loopback: set[str] = set()
    for uri in redirect_uris:
        origin = origin_of(uri)
        if origin is None:
            continue  # a private-use scheme: a native app, no browser origin
        host = _loopback_host(origin)
        if host is not None:
            loopback.add(host)
        elif origin.startswith("https://"):
            exact.add(origin)
    return Origins(frozenset(exact), frozenset(loopback))


@dataclass(frozen=True, slots=True)
class OriginIndex:
    """Every enabled client's origins, and their union (what a preflight, which names no client,
    is answered from)."""

    by_client: dict[str, Origins]
    union: Origins

    @classmethod
    def of(cls, sources: Iterable[OriginSource]) -> OriginIndex:
        by_client = {
            s.client_id: client_origins(s.redirect_uris, s.allowed_origins) for s in sources
        }
        union = Origins()
        for origins in by_client.values():
            union = union | origins
        return cls(by_client, union)

    def allows(self, origin: str, client_id: str | None) -> bool:
        """Whether `origin` may read an answer about `client_id` (None: about no client in
        particular, so any enabled client's origin)."""
        if client_id is None:
            return self.union.allows(origin)
        origins = self.by_client.get(client_id)
        return origins is not None and origins.allows(origin)
