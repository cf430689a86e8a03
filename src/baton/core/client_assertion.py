"""The rules of a `private_key_jwt` client assertion (RFC 7523 §2.2 and §3, OpenID Connect Core
§9, RFC 7521 §4.2): what its JOSE header and its claims must say, checked without I/O.

The signature is checked elsewhere (`baton.server.runtime.client_keys`), with the client's keys
from its `jwks_uri`; the `jti` is remembered elsewhere (`baton.store.sql.assertions`), until the
`expires_at` these rules give, so that no assertion is accepted twice. Here:

- the header names an asymmetric signature (`ASYMMETRIC_ALGS`): never `none` (RFC 7518 §3.6, an
  unsigned JWT) and never an HMAC (`HS256` with the client's public key as the secret is the
  classic confusion of a key set's public bytes for a shared secret);
- `iss` and `sub` are both the client's id (RFC 7523 §3 items 1 and 2; Core §9);
- `aud` holds the token endpoint's URL or the issuer identifier (`audience_problem`);
- `exp` is present and not past (item 4), and not more than `MAX_LIFETIME` ahead, which bounds
  how long a `jti` must be kept (item 7); `nbf` and `iat`, when present, are not in the future
  (items 5 and 6); every time with `LEEWAY` seconds for clocks that differ;
- `jti` is present (Core §9: REQUIRED), so that a replay can be told (item 7).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

# OIDC Core §9 / RFC 7591 §2: the `token_endpoint_auth_method` of a client that authenticates so
# (one definition, the registration rules'; named here too for the callers of these rules).
from baton.core.registration import PRIVATE_KEY_JWT as PRIVATE_KEY_JWT

# RFC 7521 §4.2 / RFC 7523 §2.2: the `client_assertion_type` of a JWT client assertion.
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The JWS algorithms an assertion may be signed with: public-key signatures only (RFC 7518 §3.3,
# §3.4, §3.5; RFC 8037 `EdDSA`, RFC 9864 `Ed25519`). Advertised as the metadata's
# `token_endpoint_auth_signing_alg_values_supported` (RFC 8414 §2), which "MUST NOT" hold `none`.
ASYMMETRIC_ALGS = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")
# Seconds of difference between the client's clock and ours that the time checks forgive.
LEEWAY = 30
# An assertion may not expire more than this many seconds ahead (RFC 7523 §3 item 7: the `jti`
# is kept "for the length of time for which the JWT would be considered valid"), which bounds
# how long each `jti` is kept. An hour: Authlib's `PrivateKeyJWT` (and other client libraries)
# sign assertions that expire an hour after `iat` by default; a `jti` is accepted once anyway,
# so a longer life lets no assertion be used twice, it only keeps its row longer.
MAX_LIFETIME = 3600
# A `jti` longer than this is refused rather than hashed (a junk bound, not a protocol rule).
MAX_JTI = 512
# A compact JWS longer than this is refused before it is decoded.
MAX_ASSERTION = 16 * 1024


class AssertionProblem(ValueError):
    """Why an assertion is refused: the `error_description` of its `invalid_client`."""


@dataclass(frozen=True, slots=True)
class Header:
    """What the JWS header says that matters here: the algorithm and the key's id."""

    alg: str
    kid: str | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """An assertion whose claims passed: its client, its `jti`, and until when (epoch seconds)
    the `jti` must be remembered: as long as the assertion could still be accepted."""

    client_id: str
    jti: str
    remember_until: int


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def unverified(assertion: str) -> tuple[Header, dict[str, Any]]:
    """The header and claims of a compact JWS, decoded but NOT verified: the claims name the
    client whose keys will verify it (RFC 7523 §3 item 2: `sub` is the client's id). Raises
    `AssertionProblem` for anything that is not a compact JWS of a JSON object signed with one
    of `ASYMMETRIC_ALGS`."""
    if len(assertion) > MAX_ASSERTION:
        raise AssertionProblem("the client assertion is too long")
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        raise AssertionProblem("the client assertion is not a signed JWT (compact JWS)")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    # binascii.Error and JSONDecodeError are ValueErrors; JSON nested deeper than the interpreter
    # recurses is a RecursionError.
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AssertionProblem("the client assertion is not a well-formed JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AssertionProblem("the client assertion is not a well-formed JWT")
    alg = header.get("alg")
    if alg not in ASYMMETRIC_ALGS:
        # RFC 7518 §3.6 `none` is no signature; an HMAC would take the client's public key as a
        # shared secret. Neither proves possession of the client's private key.
        allowed = ", ".join(ASYMMETRIC_ALGS)
        raise AssertionProblem(f"the client assertion's alg must be one of {allowed}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AssertionProblem("the client assertion's kid is not a string")
    if "crit" in header:
        # RFC 7515 §4.1.11: a recipient MUST reject a JWS with critical extensions it does not
        # understand; this server understands none.
        raise AssertionProblem("the client assertion has critical header parameters")
    return Header(alg, kid), claims


def asserted_client(claims: Mapping[str, Any]) -> str:
    """The client id the assertion claims to be from: its `sub` (RFC 7523 §3 item 2; RFC 7521
    §4.2: the `client_id` parameter is then unnecessary). Checked against `iss` by `check`."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AssertionProblem("the client assertion has no sub")
    return sub


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # RFC 7519 §2 NumericDate: a JSON number (a bool is not one, though Python says so).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AssertionProblem(f"the client assertion's {name} is not a NumericDate")
    return value


def audience_problem(aud: Any, audiences: Collection[str]) -> str | None:
    """Why `aud` does not name this server, or None when it does.

    RFC 7523 §3 item 3: "The token endpoint URL of the authorization server MAY be used as a
    value for an "aud" element to identify the authorization server as an intended audience";
    OIDC Core §9: "The Audience SHOULD be the URL of the Authorization Server's Token Endpoint".
    draft-ietf-oauth-rfc7523bis prefers the issuer identifier (an audience another server cannot
    be tricked into sharing). Both are accepted (`audiences`: the token endpoint's URL and the
    issuer identifier), in a string or in an array of strings (RFC 7519 §4.1.3)."""
    if isinstance(aud, str):
        named = [aud]
    elif isinstance(aud, list) and aud and all(isinstance(item, str) for item in aud):
        named = aud
    else:
        return "the client assertion has no aud"
    if not any(item in audiences for item in named):
        return "the client assertion's aud is not this server's token endpoint or issuer"
    return None


def check(
    claims: Mapping[str, Any],
    *,
    client_id: str,
    audiences: Collection[str],
    now: int,
    leeway: int = LEEWAY,
    max_lifetime: int = MAX_LIFETIME,
) -> Accepted:
    """The assertion of `client_id` accepted on its claims at `now`, or `AssertionProblem`."""
    # RFC 7523 §3 item 1: "The JWT MUST contain an "iss" (issuer) claim that contains a unique
    # identifier for the entity that issued the JWT"; for client authentication, Core §9:
    # "iss REQUIRED. Issuer. This MUST contain the client_id of the OAuth Client."
    if claims.get("iss") != client_id:
        raise AssertionProblem("the client assertion's iss is not the client's id")
    # Item 2: "For client authentication, the subject MUST be the "client_id" of the OAuth
    # client."
    if claims.get("sub") != client_id:
        raise AssertionProblem("the client assertion's sub is not the client's id")
    problem = audience_problem(claims.get("aud"), audiences)
    if problem is not None:
        raise AssertionProblem(problem)
    # Item 4: "The JWT MUST contain an "exp" (expiration time) claim ... The authorization
    # server MUST reject any JWT with an expiration time that has passed, subject to allowable
    # clock skew between systems."
    exp = _number(claims, "exp")
    if exp is None:
        raise AssertionProblem("the client assertion has no exp")
    if exp + leeway <= now:
        raise AssertionProblem("the client assertion has expired")
    if exp > now + max_lifetime + leeway:
        raise AssertionProblem(
            f"the client assertion expires too far ahead (at most {max_lifetime} seconds)"
        )
    # Item 5: "The JWT MAY contain an "nbf" (not before) claim ... The authorization server
    # MUST reject a JWT that is not yet valid" (with skew, as for exp).
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise AssertionProblem("the client assertion is not valid yet (nbf)")
    # Item 6: "The JWT MAY contain an "iat" (issued at) claim"; one from the future is not sane.
    iat = _number(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise AssertionProblem("the client assertion was issued in the future (iat)")
    # Core §9: "jti REQUIRED. JWT ID. A unique identifier for the token, which can be used to
    # prevent reuse of the token."
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise AssertionProblem("the client assertion has no jti")
    if len(jti) > MAX_JTI:
        raise AssertionProblem("the client assertion's jti is too long")
    # Remembered as long as the assertion could be accepted: up to its exp, plus the leeway.
    return Accepted(client_id, jti, math.ceil(exp) + leeway)


def replay_digest(client_id: str, jti: str) -> bytes:
    """The key under which an accepted assertion is remembered (`client_assertions.digest`): the
    SHA-256 of the client id and the `jti`. A `jti` is unique per client only (RFC 7519 §4.1.7),
    so the client id is part of it, length-prefixed so that no other pair of strings makes the
    same input."""
    client = client_id.encode("utf-8", "surrogatepass")
    return hashlib.sha256(
        len(client).to_bytes(4, "big") + client + jti.encode("utf-8", "surrogatepass")
    ).digest()
