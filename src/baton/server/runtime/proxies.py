"""The client's address behind trusted reverse proxies (`--trusted-proxies`).

By default `X-Forwarded-For` is never read: the address of a request is its TCP peer, whatever
the request says (uvicorn's own `proxy_headers` is off, since it trusted the header from any
loopback peer). A header anyone can write must not choose the address that rate limits, sign-in
lockouts, logs, audit rows and webhooks are keyed on.

With `--trusted-proxies CIDR,...`, and only when the TCP peer is inside one of those networks,
`X-Forwarded-For` is read right to left: each proxy appends the address it received the request
from, so the entries on the right are the trusted hops, and the first address that is not
inside a trusted network is the client (everything left of it is whatever the client claimed,
and ignored). Every entry must parse as an IP address; otherwise the request is refused (400),
so a free string never becomes an "address".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import NoStoreJSON

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

FORWARDED_FOR = b"x-forwarded-for"
MAX_HOPS = 32  # more entries than any real chain of proxies: refused, not parsed


class BadForwardedFor(ValueError):
    """`X-Forwarded-For` from a trusted proxy holds something that is not an IP address."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """`--trusted-proxies`: comma-separated networks (`10.0.0.0/8`) or addresses (`127.0.0.1`);
    ValueError names the first one that is neither."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network or address: {item!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 address seen through an IPv6 socket (`::ffff:10.0.0.1`) is that IPv4 address.
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded: Iterable[bytes], networks: Sequence[Network]
) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy that forwarded
    the request (then the rightmost untrusted `X-Forwarded-For` entry, or the leftmost if
    every entry is trusted). Raises BadForwardedFor for an entry that is not an IP address."""
    if not networks or peer is None:
        return peer
    peer_address = _address(peer)
    if peer_address is None or not _trusted(peer_address, networks):
        return peer
    entries: list[str] = []
    for value in forwarded:
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            raise BadForwardedFor("X-Forwarded-For is not ASCII") from None
        entries += [entry.strip() for entry in text.split(",")]
    if not entries:
        return peer
    if len(entries) > MAX_HOPS:
        raise BadForwardedFor("X-Forwarded-For has too many entries")
    addresses = []
    for entry in entries:
        address = _address(entry)
        if address is None:
            raise BadForwardedFor("X-Forwarded-For holds an entry that is not an IP address")
        addresses.append(address)
    for address in reversed(addresses):
        if not _trusted(address, networks):
            return str(address)
    return str(addresses[0])


class TrustedProxies:
    """Puts the client's address (see `client_address`) in `scope["client"]` for everything
    downstream: `baton.server.runtime.context.source_address`, the access log, the limits."""

    def __init__(self, app: ASGIApp, networks: Sequence[Network] = ()) -> None:
        self.app = app
        self.networks = tuple(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [value for name, value in scope["headers"] if name == FORWARDED_FOR]
        try:
            address = client_address(peer, forwarded, self.networks)
        except BadForwardedFor as exc:
            refusal = NoStoreJSON(
                {"error": ErrorCode.INVALID_REQUEST, "error_description": str(exc)},
                status_code=400,
            )
            await refusal(scope, receive, send)
            return
        if address != peer:
            # In place: the access log (`Observe`, outside this middleware) reads it too.
            scope["client"] = (address, 0)
        await self.app(scope, receive, send)


__all__ = ["BadForwardedFor", "TrustedProxies", "client_address", "parse_networks"]
