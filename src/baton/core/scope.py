"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive, order-insensitive."""

from __future__ import annotations

import re

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# Every admin API scope starts so (`baton.server.admin.api.AdminScope`): never a scope of a
# client no operator registered.
ADMIN_PREFIX = "admin:"


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
