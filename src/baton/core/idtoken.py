"""ID tokens (OpenID Connect Core §2): their claims, `at_hash`, and signing them.

An ID token is issued with every token response of an OpenID Connect grant (one whose scope holds
`openid` and that has a sign-in): at the code's redemption (§3.1.3.3) and at each refresh (§12.2).
It is minted inside the transaction that issues the pair, like a JWT access token, so it is part
of the pair sealed for a replay: a retried refresh gets the very same ID token back.

Nothing here does I/O: the signing key comes from the key ring's memory (`KeyRing.key_for`).

Decisions:
- `aud` is the client id alone, a string; `azp` is left out. §2: azp "is only needed when the ID
  Token has a single audience value and that audience is different than the authorized party";
  Baton's ID tokens never have another audience, and relying parties (Authlib, openid-client)
  check azp only when it is present or `aud` has several members.
- `at_hash` (§3.1.3.6) hashes with the hash of the `alg`: SHA-256 for RS256 and ES256, SHA-512
  for Ed25519 (and its old name EdDSA), as node-oidc-provider and openid-client
  (oidc-token-hash) and Authlib (for EdDSA) do: Ed25519 signs with SHA-512 internally.
- `exp` is `iat` plus `--id-token-lifetime`, whatever the access token's lifetime: the ID token
  says who signed in and when, it grants nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws

from baton.core.facts import GrantFacts, SignIn
from baton.core.jwa import registry
from baton.core.keys import SigningKey
from baton.core.subject import SectorError, subject_for

# The claims the protocol sets; a snapshotted user claim (`SignIn.claims`) never replaces one.
PROTOCOL_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "sid",
        "jti",
        "nbf",
    }
)

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "RS256": hashlib.sha256,
    "ES256": hashlib.sha256,
    "PS256": hashlib.sha256,
    "Ed25519": hashlib.sha512,
    "EdDSA": hashlib.sha512,  # RFC 8037's name of Ed25519 (Baton's Edwards keys are Ed25519)
}


class IdTokenError(Exception):
    """No ID token can be made for this client now. `transient`: a signing key is missing (the
    key ring creates the missing ones at start-up and at each reload), so a retry may succeed;
    otherwise the client's registration is at fault."""

    def __init__(self, description: str, *, transient: bool) -> None:
        super().__init__(description)
        self.description = description
        self.transient = transient


def token_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6: "the base64url encoding of the left-most half of the hash of the
    octets of the ASCII representation of the access_token value, where the hash algorithm used
    is the hash algorithm used in the alg Header Parameter of the ID Token's JOSE Header"."""
    hasher = _HASHES.get(alg)
    if hasher is None:
        raise ValueError(f"no hash is known for alg {alg!r}")
    full: bytes = hasher(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(full[: len(full) // 2]).rstrip(b"=").decode("ascii")


def id_token_claims(
    *,
    issuer: str,
    subject: str,
    audience: str,
    issued_at: int,
    lifetime: int,
    sign_in: SignIn,
    sid: str | None,
    nonce: str | None,
    at_hash: str | None,
) -> dict[str, Any]:
    """The claims of an ID token (OIDC Core §2), in the order they are written."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued_at + lifetime,
        "iat": issued_at,
        # §2: auth_time is REQUIRED when max_age was asked (or auth_time as an essential
        # claim), OPTIONAL otherwise; always given, the relying party never has to ask.
        "auth_time": sign_in.auth_time,
    }
    if nonce is not None:
        # §3.1.3.6 / §2: "If present in the Authentication Request, Authorization Servers MUST
        # include a nonce Claim in the ID Token with the Claim Value being the nonce value sent
        # in the Authentication Request." The code's redemption passes it; a refresh passes
        # none (§12.2: an ID token issued at a refresh "SHOULD NOT have a nonce Claim Value").
        claims["nonce"] = nonce
    if sign_in.acr is not None:
        claims["acr"] = sign_in.acr
    if sign_in.amr:
        claims["amr"] = list(sign_in.amr)
    if sid is not None:
        claims["sid"] = sid  # Front/Back-Channel Logout: the session the user signed in with
    if at_hash is not None:
        claims["at_hash"] = at_hash
    for name, value in sign_in.claims.items():
        if name not in PROTOCOL_CLAIMS:
            claims[name] = value
    return claims


def sign(claims: Mapping[str, Any], key: SigningKey) -> str:
    """The compact JWS of `claims`: header `alg`, `kid`, `typ: JWT` (§2: ID Tokens MUST be
    signed using JWS)."""
    header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    body = json.dumps(claims, separators=(",", ":")).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry(key.alg))


@dataclass(frozen=True, slots=True)
class IdTokenIssuer:
    """What a client's ID tokens depend on, built by the token endpoint from the client and the
    app; `baton.core.pairs.plan_pair` calls `issue` inside the transaction (`IdTokenFormat`)."""

    issuer: str
    lifetime: int
    salt: bytes = field(repr=False)
    alg: str  # the client's id_token_signed_response_alg
    subject_type: str
    redirect_uris: tuple[str, ...]
    sector_identifier_uri: str | None
    key_for: Callable[[str, int], SigningKey | None] = field(repr=False)

    def issue(self, grant: GrantFacts, access_token: str, nonce: str | None, issued_at: int) -> str:
        """The ID token of `grant` issued with `access_token` at `issued_at`; raises
        `IdTokenError` when none can be made (the transaction then rolls back)."""
        sign_in = grant.sign_in
        if sign_in is None or grant.subject is None:
            raise ValueError("an ID token needs a grant with a user and a sign-in")
        key = self.key_for(self.alg, issued_at)
        if key is None:
            raise IdTokenError(
                f"no key signs ID tokens with {self.alg} yet; retry shortly", transient=True
            )
        try:
            # §8: the sub the client sees, public or pairwise (common decisions, issue 24).
            subject = subject_for(
                grant.subject,
                self.subject_type,
                self.redirect_uris,
                self.sector_identifier_uri,
                self.salt,
            )
        except SectorError as exc:
            raise IdTokenError(f"the client's pairwise subject: {exc}", transient=False) from None
        claims = id_token_claims(
            issuer=self.issuer,
            subject=subject,
            audience=grant.client_id,  # §2: aud "MUST contain the OAuth 2.0 client_id"
            issued_at=issued_at,
            lifetime=self.lifetime,
            sign_in=sign_in,
            sid=grant.sid,
            nonce=nonce,
            at_hash=token_hash(access_token, key.alg),
        )
        return sign(claims, key)
