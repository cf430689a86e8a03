"""What makes a redirect URI acceptable at registration, for the CLI and the console alike."""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def redirect_uri_problem(uri: str) -> str | None:
    """Absolute, no fragment (RFC 6749 §3.1.2); plain http only for loopback (RFC 8252 §7.3)."""
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as exc:
        return f"redirect URI {uri!r} is not a valid URI: {exc}"
    if not parts.scheme or parts.fragment or "#" in uri:
        return f"redirect URI {uri!r} must be absolute and have no fragment"
    if parts.scheme == "http" and hostname not in LOOPBACK:
        return f"redirect URI {uri!r} must use https (plain http is allowed for loopback only)"
    if parts.scheme in ("http", "https") and not hostname:
        return f"redirect URI {uri!r} has no host"
    return None
