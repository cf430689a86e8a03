"""PKCE (RFC 7636), S256 only.

The challenge is `baton.core.pkce.s256`, the same function the server checks it with: `core`
imports only the standard library, so the SDK shares it without pulling in the server.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from baton.core.pkce import s256


@dataclass(frozen=True)
class Pkce:
    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-], within 43..128
        return cls(verifier, s256(verifier))
