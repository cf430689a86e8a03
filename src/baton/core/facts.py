"""Facts about grants and tokens, as the store holds them.

Only facts are stored (when a token was issued, exchanged, revoked); every state a rule needs is
derived from them at the moment of the question. Nothing has to run when a leeway ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SignIn:
    """An OpenID Connect grant's sign-in, as its ID tokens repeat it (OIDC Core §2, §12.2): when
    the user authenticated (`auth_time`), how (`acr`, `amr`), and the claims the relying party
    asked to find in the ID token (`claims` request, §5.5), with their values at the sign-in.

    Stored as JSON on the code and the grant (`sign_in`); the session's `sid` is its own column.
    """

    auth_time: int
    acr: str | None = None
    amr: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    # The claims asked by name for the UserInfo response (`claims.userinfo`, §5.5).
    userinfo: tuple[str, ...] = ()
    # Claims with their values a consent app gave for the UserInfo response (its accept's
    # `session.userinfo`; never a registered claim name), released by /userinfo as given.
    userinfo_claims: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def stored(self) -> str:
        value: dict[str, Any] = {"auth_time": self.auth_time}
        if self.acr is not None:
            value["acr"] = self.acr
        if self.amr:
            value["amr"] = list(self.amr)
        if self.claims:
            value["claims"] = self.claims
        if self.userinfo:
            value["userinfo"] = sorted(self.userinfo)
        if self.userinfo_claims:
            value["userinfo_claims"] = self.userinfo_claims
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_stored(cls, text: str | None) -> SignIn | None:
        if text is None:
            return None
        value = json.loads(text)
        return cls(
            auth_time=int(value["auth_time"]),
            acr=value.get("acr"),
            amr=tuple(value.get("amr", ())),
            claims=dict(value.get("claims", {})),
            userinfo=tuple(value.get("userinfo", ())),
            # Absent from rows written before consent apps: none.
            userinfo_claims=dict(value.get("userinfo_claims", {})),
        )


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
    # OpenID Connect: the session it came from and its sign-in; None for a plain OAuth grant.
    sid: str | None = None
    sign_in: SignIn | None = None

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
    # Whether its parent was forked from (a retry got a sibling pair): its children are one
    # family of which one chain continues (rule 3b), whatever the policy in force now.
    parent_forked: bool = False
    sealed_id_token: bytes | None = None  # the ID token sealed with `sealed_response`, if any
    # The `exp` of its companion access token (None: rows written before migration 0011), so a
    # refresh that comes after it is counted (`baton.core.signals`, `late_refresh`).
    access_expires_at: int | None = None

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
    # When it was exchanged (None: not yet): an access token used after it is a stale use
    # (`baton.core.signals`, `stale_access`).
    exchanged_at: int | None = None


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
    # OpenID Connect: the request's `nonce`, the session and the sign-in (None: plain OAuth).
    nonce: str | None = None
    sid: str | None = None
    sign_in: SignIn | None = None


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A browser session that is signed in: whose it is, and its sign-in (OIDC Core §2): when
    (`auth_time`, the session's start), how (`acr`, `amr`), and its public id (`sid`, which ID
    tokens and logout tokens carry; None for a session begun before OpenID Connect)."""

    user_id: int
    auth_time: int
    sid: str | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
