"""Which IP addresses a server may connect to on someone else's say-so.

A URL an outsider chooses (a client ID metadata document, a `jwks_uri`, a client's
`notify_url`) must not make the server reach its own network: loopback, private, link-local,
multicast, reserved and the other not globally reachable ranges are refused, and IPv6 forms that
carry an IPv4 address are judged by that address. Pure: the server's fetcher
(`baton.server.runtime.fetching`) resolves names and connects; the store's checks of a URL
written by an operator (`baton.store.admin.checked_contact`) judge its literal address here too.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# RFC 6052 §2.1: the NAT64 well-known prefix; its last 32 bits are an IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused when private addresses are not allowed, or
    None for a public unicast address. IPv6 forms that carry an IPv4 address (IPv4-mapped
    `::ffff:a.b.c.d`, 6to4 `2002:ab:cd::`, NAT64 `64:ff9b::a.b.c.d`) are judged by that
    address, so `::ffff:127.0.0.1` is loopback."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal(embedded)
            return f"{inner} (embedded in {address})" if inner else None
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return f"{address} is a site-local address"
    if address.is_private:
        return f"{address} is a private address"
    if address.is_reserved:
        return f"{address} is a reserved address"
    if not address.is_global:
        # Shared (100.64/10), documentation, benchmarking, Teredo and the other special-purpose
        # ranges of the IANA registries that are not globally reachable.
        return f"{address} is not a globally reachable address"
    return None
