"""What makes an issuer identifier acceptable, and when `baton serve` must be told one.

RFC 8414 §2: "The authorization server's issuer identifier is a URL that uses the "https" scheme
and has no query or fragment components." Every endpoint URL in the metadata, every JWT's `iss`
and the `iss` of every authorization response (RFC 9207) derive from it, and clients compare it
exactly (RFC 8414 §3.3), so a wrong one fails every client at once, late. Refused at start-up
instead:
- a scheme other than `https`, except `http` to this machine (`127.0.0.1`, `[::1]`,
  `localhost`) for development, where nothing crosses a network;
- a query, a fragment or user information; a missing host; a port that is not a number;
- a trailing slash is dropped before this (the endpoint URLs append their own paths).

And when the server listens on anything but a loopback address (`--host 0.0.0.0`, a LAN
address), the default issuer `http://HOST:PORT` is what no client can reach or trust: the issuer
must then be given (`--issuer`, `BATON_ISSUER` or the config file).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """`host` (a listening address or a URL's host) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def issuer_problem(issuer: str) -> str | None:
    """Why `issuer` may not be this server's issuer identifier, or None when it may."""
    try:
        parts = urlsplit(issuer)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return f"the issuer {issuer!r} is not a URL"
    if not host:
        return f"the issuer {issuer!r} has no host"
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        return f"the issuer {issuer!r} may have no query or fragment (RFC 8414 §2)"
    if parts.username is not None or parts.password is not None:
        return f"the issuer {issuer!r} may have no user information"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback(host):
        return None
    return f"the issuer {issuer!r} must use https (RFC 8414 §2); http only on 127.0.0.1 or [::1]"


def missing_issuer_problem(host: str, issuer_given: bool) -> str | None:
    """Why the server may not listen on `host` without an issuer, or None when it may."""
    if issuer_given or is_loopback(host):
        return None
    return (
        f"listening on {host} needs the URL clients reach this server at: set --issuer "
        "(https://...), BATON_ISSUER or `issuer` in the config file"
    )
