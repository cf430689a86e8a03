"""Token pairs: minting them, the token response, and the payload sealed for a replay."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from baton.core.tokens import Minted, TokenKind, mint


@dataclass(frozen=True, slots=True)
class MintedPair:
    """Tokens generated before the transaction that may issue them (cheap, and never stored)."""

    access: Minted
    refresh: Minted | None

    @classmethod
    def new(cls, with_refresh: bool = True) -> MintedPair:
        return cls(mint(TokenKind.ACCESS), mint(TokenKind.REFRESH) if with_refresh else None)


@dataclass(frozen=True, slots=True)
class IssuedPair:
    """A pair as the client receives it; only ever in memory or sealed."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    scope: str
    access_expires_at: int
    refresh_expires_at: int | None
    grant_id: str
    generation: int

    def token_response(self, now: int) -> dict[str, Any]:
        """RFC 6749 §5.1, plus `refresh_token_expires_in` (rule 9).

        `expires_in` is computed at the moment of the response, so a replayed pair announces the
        time it really has left.
        """
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": max(self.access_expires_at - now, 0),
        }
        if self.refresh_token is not None and self.refresh_expires_at is not None:
            body["refresh_token"] = self.refresh_token
            body["refresh_token_expires_in"] = max(self.refresh_expires_at - now, 0)
        body["scope"] = self.scope
        return body

    def seal_payload(self) -> bytes:
        return json.dumps(
            [
                self.access_token,
                self.refresh_token,
                self.scope,
                self.access_expires_at,
                self.refresh_expires_at,
                self.grant_id,
                self.generation,
            ],
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def from_seal_payload(cls, payload: bytes) -> IssuedPair:
        at, rt, scope, at_exp, rt_exp, grant_id, generation = json.loads(payload)
        return cls(at, rt, scope, at_exp, rt_exp, grant_id, generation)
