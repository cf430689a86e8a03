"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive, order-insensitive; and the
RFC 8707 resources an authorization request is for, which default like a scope."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class ScopeError(ValueError):
    pass


def parse(text: str) -> frozenset[str]:
    """The scope tokens of `text`; raises ScopeError on a malformed string."""
    if text == "":
        return frozenset()
    parts = text.split(" ")
    if any(not _SCOPE_TOKEN.fullmatch(p) for p in parts):
        raise ScopeError('scope must be space-separated tokens of printable ASCII without " or \\')
    return frozenset(parts)


def render(scopes: frozenset[str] | set[str]) -> str:
    return " ".join(sorted(scopes))


class TargetError(ValueError):
    """A requested resource the client may not have (RFC 8707 §2: `invalid_target`)."""


def resources(asked: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The RFC 8707 resources an authorization request is for, sorted; raises TargetError.

    Naming none means every resource the client is allowed, as an omitted scope means the
    client's registered scope (RFC 6749 §3.3); naming one outside `allowed` is refused."""
    for resource in asked:
        # RFC 8707 §2: "an absolute URI ... MUST NOT include a fragment component".
        try:
            absolute = bool(urlsplit(resource).scheme)
        except ValueError:
            absolute = False
        if not absolute or "#" in resource:
            raise TargetError(f"resource {resource!r} must be an absolute URI without a fragment")
        if resource not in allowed:
            raise TargetError(f"resource {resource!r} is not one this client may ask for")
    return tuple(sorted(set(asked or allowed)))
