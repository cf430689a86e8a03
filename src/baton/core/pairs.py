"""Token pairs: minting them, the token response, and the payload sealed for a replay."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from baton.core.audience import audience_of, stored_audience
from baton.core.facts import GrantFacts
from baton.core.policy import Policy
from baton.core.rules import OPENID, issues_refresh_token
from baton.core.tokens import (
    BODY_LENGTH,
    Minted,
    TokenKind,
    digest,
    id_width,
    mint,
    minted,
    random_base62_parts,
    random_id,
)
from baton.wire import TokenResponse


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What an access token says (RFC 9068 §2.2), whatever its format."""

    jti: str
    issued_at: int
    expires_at: int
    scope: str
    grant_id: str
    client_id: str
    subject: str | None  # the user; None for client_credentials
    # `aud`: the RFC 8707 resources the token is for, else the server's default audience; empty
    # only when no default was given (the token format then applies its own).
    audience: tuple[str, ...]


# An access token's `jti`: 12 random bytes' entropy, in base-62 characters.
_JTI_BYTES = 12
_JTI_WIDTH = id_width(_JTI_BYTES)

# `json.dumps` with `separators` builds an encoder per call; the seal is made inside the
# rotation's transaction, so this one is built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


class AccessTokenFormat(Protocol):
    def issue(self, claims: AccessClaims) -> str:
        """The access token string for these claims."""
        ...


class OpaqueAccessTokens:
    """`bat_at_...`: 256 random bits; everything else is looked up by introspection."""

    def issue(self, claims: AccessClaims) -> str:
        return mint(TokenKind.ACCESS).plaintext

    def premint(self) -> Minted:
        """The token before its claims are known: an opaque token does not depend on them, so
        it is made before the transaction rather than inside it."""
        return mint(TokenKind.ACCESS)


OPAQUE = OpaqueAccessTokens()


class IdTokenFormat(Protocol):
    """The ID tokens of one client (`baton.core.idtoken.IdTokenIssuer`)."""

    def issue(self, grant: GrantFacts, access_token: str, nonce: str | None, issued_at: int) -> str:
        """The ID token of `grant` issued with `access_token` (its `at_hash`) at `issued_at`;
        `nonce`: the authentication request's, at the code's redemption only."""
        ...


@dataclass(frozen=True, slots=True)
class MintedPair:
    """What a token response will issue: the refresh token, generated before the transaction
    (cheap, never stored), and the format its access token will be issued in."""

    refresh: Minted | None
    access_format: AccessTokenFormat = OPAQUE
    # The RFC 8707 resources the request named (a narrowing of the grant's; none: all of them),
    # checked against the grant inside the transaction that issues the pair.
    resources: tuple[str, ...] = ()
    # When the new tokens' lifetimes start (`Clock.ceiling()`); None: the transaction's `now`.
    lifetimes_from: int | None = None
    # An opaque access token, made in advance (see `OpaqueAccessTokens.premint`).
    access: Minted | None = None
    # The access token's `jti`: random, so drawn here too, outside the rotation's transaction.
    jti: str = field(default_factory=lambda: random_id("", _JTI_BYTES))
    # `aud` when the grant holds no resources (`--access-token-audience`, else the issuer).
    default_audience: str | None = None
    # The client's ID tokens, issued when the grant is an OpenID Connect one (`openid` in its
    # scope, and a sign-in); None: never (client_credentials).
    id_tokens: IdTokenFormat | None = None

    @classmethod
    def new(
        cls,
        with_refresh: bool = True,
        access_format: AccessTokenFormat = OPAQUE,
        resources: tuple[str, ...] = (),
        lifetimes_from: int | None = None,
        default_audience: str | None = None,
        id_tokens: IdTokenFormat | None = None,
    ) -> MintedPair:
        # The refresh token's body, the opaque access token's and the `jti`, from one draw of
        # the system's randomness (`random_base62_parts`).
        opaque = isinstance(access_format, OpaqueAccessTokens)
        refresh_body, access_body, jti = random_base62_parts(
            BODY_LENGTH if with_refresh else 0, BODY_LENGTH if opaque else 0, _JTI_WIDTH
        )
        return cls(
            minted(TokenKind.REFRESH, refresh_body) if with_refresh else None,
            access_format,
            resources,
            lifetimes_from,
            minted(TokenKind.ACCESS, access_body) if opaque else None,
            jti,
            default_audience=default_audience,
            id_tokens=id_tokens,
        )


@dataclass(frozen=True, slots=True)
class PlannedPair:
    """A pair about to be stored: what the client will see, and the access token's row."""

    issued: IssuedPair
    access_digest: bytes = field(repr=False)
    jti: str
    audience: str | None  # as `access_tokens.audience` holds it (`stored_audience`)
    issued_at: int
    # The refresh token to store: the pair's, unless the grant gets none (`issues_refresh_token`).
    refresh: Minted | None = field(default=None, repr=False)


def plan_pair(
    grant: GrantFacts,
    pair: MintedPair,
    generation: int,
    scope: str,
    now: int,
    policy: Policy,
    nonce: str | None = None,
) -> PlannedPair:
    """The pair a grant issues at `now`, with its lifetimes (rule 2, rule 6), and the ID token
    of an OpenID Connect grant (`nonce`: the code's, at its redemption).

    Its access token is for the resources `pair` names, else for all the grant holds (the store
    has checked, in the same transaction, that those named are the grant's: `narrowed`)."""
    start = max(now, pair.lifetimes_from or now)
    # A plain OAuth grant's scope seldom holds "openid" even as a substring: the scope is parsed
    # only for the grants that may be OpenID Connect ones.
    oidc = OPENID in grant.scope and OPENID in (granted := frozenset(grant.scope.split()))
    refresh = pair.refresh
    if oidc and not issues_refresh_token(granted):
        refresh = None  # OIDC Core §11: no offline_access, no refresh token
    # The grant's absolute end as the policy in force caps it: a pair never outlives its grant.
    grant_end = policy.grant_deadline(grant.created_at, grant.expires_at)
    if refresh is not None:
        access_exp, refresh_exp = policy.pair_expiries(start, grant_end)
    else:
        access_exp, refresh_exp = policy.access_only_expiry(start, grant_end), None
    claims = AccessClaims(
        jti=pair.jti,
        issued_at=now,
        expires_at=access_exp,
        scope=scope,
        grant_id=grant.id,
        client_id=grant.client_id,
        subject=grant.subject,
        audience=audience_of(pair.resources or grant.resources, pair.default_audience),
    )
    if pair.access is not None:
        access_token, access_digest = pair.access.plaintext, pair.access.digest
    else:
        access_token = pair.access_format.issue(claims)
        access_digest = digest(access_token)
    id_token = None
    if oidc and pair.id_tokens is not None and grant.sign_in is not None:
        # OIDC Core §3.1.3.3: the token response of an authentication "MUST include an ID
        # Token"; §12.2: a refresh's may, and Baton's does (with the same iss, sub, aud and
        # auth_time, and no nonce).
        id_token = pair.id_tokens.issue(grant, access_token, nonce, now)
    issued = IssuedPair(
        access_token=access_token,
        refresh_token=refresh.plaintext if refresh else None,
        scope=scope,
        access_expires_at=access_exp,
        refresh_expires_at=refresh_exp,
        grant_id=grant.id,
        generation=generation,
        id_token=id_token,
    )
    return PlannedPair(
        issued, access_digest, claims.jti, stored_audience(claims.audience), now, refresh
    )


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
    id_token: str | None = field(default=None, repr=False)  # OpenID Connect Core §3.1.3.3

    def token_response(self, now: int) -> TokenResponse:
        """RFC 6749 §5.1, plus `refresh_token_expires_in` (rule 9).

        `expires_in` is computed at the moment of the response, so a replayed pair announces the
        time it really has left.
        """
        expires_in = max(self.access_expires_at - now, 0)
        response: TokenResponse
        if self.refresh_token is None or self.refresh_expires_at is None:
            response = {
                "access_token": self.access_token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": self.scope,
            }
        else:
            response = {
                "access_token": self.access_token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": self.refresh_token,
                "refresh_token_expires_in": max(self.refresh_expires_at - now, 0),
                "scope": self.scope,
            }
        if self.id_token is not None:
            response["id_token"] = self.id_token  # OIDC Core §3.1.3.3
        return response

    def seal_payload(self) -> bytes:
        """The pair as sealed for a replay, without its ID token (sealed apart, in
        `refresh_tokens.sealed_id_token`): a JSON array of seven fields, as Baton 0.1.0 sealed
        and reads it, so that a 0.1.0 server replays it during a rolling upgrade."""
        fields: list[str | int | None] = [
            self.access_token,
            self.refresh_token,
            self.scope,
            self.access_expires_at,
            self.refresh_expires_at,
            self.grant_id,
            self.generation,
        ]
        return _COMPACT.encode(fields).encode("utf-8")

    @classmethod
    def from_seal_payload(cls, payload: bytes, id_token: str | None = None) -> IssuedPair:
        """A sealed pair and its ID token, if one was sealed with it. The array has seven
        fields, or eight where a build before migration 0009 appended the ID token."""
        at, rt, scope, at_exp, rt_exp, grant_id, generation, *rest = json.loads(payload)
        if rest and id_token is None:
            id_token = rest[0]
        return cls(at, rt, scope, at_exp, rt_exp, grant_id, generation, id_token)
