"""Facts about grants and tokens, as the store holds them.

Only facts are stored (when a token was issued, exchanged, revoked); every state a rule needs is
derived from them at the moment of the question. Nothing has to run when a leeway ends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GrantFacts:
    id: str
    client_id: str
    user_id: int | None
    subject: str | None  # the username, None for client_credentials
    scope: str
    created_at: int
    expires_at: int
    revoked_at: int | None
    revoked_reason: str | None  # a `RevocationCause`, as stored
    resources: tuple[str, ...] = ()  # RFC 8707: what its tokens may be for (`grants.resources`)

    def live(self, now: int) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class RefreshFacts:
    id: int
    grant: GrantFacts
    generation: int
    issued_at: int
    expires_at: int  # idle expiry, capped by the grant's absolute expiry
    exchanged_at: int | None
    retire_at: int | None  # exchanged_at + the leeway in force at the exchange
    revoked_at: int | None
    sealed_response: bytes | None
    # Lineage, for `fork` (read only under that policy; None otherwise): the token this one was
    # issued from, the child of this token whose chain continued, and the child of the parent
    # whose chain continued (this token itself, a sibling, or None while none has).
    parent_id: int | None = None
    continued_id: int | None = None
    parent_continued_id: int | None = None

    def in_leeway(self, now: int) -> bool:
        return (
            self.exchanged_at is not None
            and self.retire_at is not None
            and now < self.retire_at
            and self.revoked_at is None
            and self.grant.live(now)
        )


@dataclass(frozen=True, slots=True)
class CompanionFacts:
    """What an access token needs to know of the refresh token issued with it."""

    retire_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class AccessFacts:
    id: int
    grant: GrantFacts
    generation: int
    scope: str
    issued_at: int
    expires_at: int
    revoked_at: int | None
    companion: CompanionFacts | None  # None for client_credentials
    jti: str | None = None
    audience: tuple[str, ...] = ()  # `aud`: the resources it is for, or the default audience


@dataclass(frozen=True, slots=True)
class CodeFacts:
    client_id: str
    user_id: int
    redirect_uri: str | None  # None when the authorization request named none
    scope: str
    code_challenge: str | None
    expires_at: int
    used_at: int | None
    grant_id: str | None  # the grant the code produced, once redeemed
    resources: tuple[str, ...] = ()  # RFC 8707 resources the user consented to
