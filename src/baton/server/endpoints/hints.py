"""ID tokens Baton issued, read back: the `id_token_hint` of an authentication request (OIDC
Core §3.1.2.1) and of a logout request (RP-Initiated Logout §2).

A hint is trusted only as far as its signature: it must be a compact JWS signed by one of the
keys this server publishes, and its `iss` must be this server's issuer. Its expiry is not
checked: "the ID Token [...] MAY have expired" (RP-Initiated Logout §2), and §3.1.2.1 of Core
asks only that the OP "issued" it. Anything else (another issuer, a key we never had, a forged
or malformed token) reads as no hint at all: the caller answers `invalid_request`.

The same keys sign other tokens (back-channel logout tokens, JWT access tokens): a hint must
read as an ID token, not merely as a JWS of ours. Back-Channel Logout §2.4 gives logout tokens
`typ` `logout+jwt` and an `events` Claim "to make logout tokens distinguishable from ID
Tokens", so a token with either is no hint; Core §2 makes `iss`, `sub`, `aud` and `iat`
REQUIRED in an ID token (`exp` too, but a hint may have expired, so its value is not read).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.core.keys import looks_like_jwt
from baton.server.runtime.context import Baton

# The algorithms Baton signs ID tokens with (`core.keys.ALGORITHMS`, and RFC 8037's old name of
# Ed25519); never `none`, never a symmetric one (OIDC Core §3.1.3.7 allows HMAC only with the
# client's secret, which a hint could then forge).
HINT_ALGORITHMS = frozenset({"RS256", "ES256", "Ed25519", "EdDSA"})
# The `typ` of an ID token, when it has one (RFC 7519 §5.1 recommends "JWT"; the media type's
# full name is the same type).
_ID_TOKEN_TYPES = frozenset({"JWT", "APPLICATION/JWT"})


@dataclass(frozen=True, slots=True)
class IdTokenHint:
    """What a hint tells: whom it was about (`sub`, as the client saw it), for whom (`aud`,
    `azp`) and in which session (`sid`)."""

    sub: str
    aud: tuple[str, ...]
    azp: str | None
    sid: str | None

    @property
    def client_id(self) -> str | None:
        """The client the token was issued to: `azp`, or the single audience (OIDC Core §2)."""
        if self.azp is not None:
            return self.azp
        return self.aud[0] if len(self.aud) == 1 else None


def read_id_token_hint(app: Baton, token: str) -> IdTokenHint | None:
    """The hint `token`, if this server issued it (signature and `iss`), else None."""
    issuer = app.settings.issuer_identifier
    return verify_id_token(token, app.keys.jwks(app.clock.now()), issuer)


def verify_id_token(token: str, key_set: Mapping[str, Any], issuer: str) -> IdTokenHint | None:
    """`token` read as an ID token signed by a key of `key_set` (a JWKS) for `issuer`."""
    if not looks_like_jwt(token):
        return None
    header_part, payload_part, _ = token.split(".")
    header = _json_part(header_part)
    if header is None:
        return None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in HINT_ALGORITHMS or not isinstance(kid, str):
        return None
    # Back-Channel Logout §2.4 ("explicit typing", RFC 8725 §3.11): an ID token is typed `JWT`
    # or not at all (Core §2 does not require `typ`); `logout+jwt`, `at+jwt` (RFC 9068 §2.1)
    # and any other type is another kind of token. RFC 7515 §4.1.9: compared without case.
    typ = header.get("typ", "JWT")
    if not isinstance(typ, str) or typ.upper() not in _ID_TOKEN_TYPES:
        return None
    members = key_set.get("keys")
    if not isinstance(members, list):
        return None
    found = [m for m in members if isinstance(m, dict) and m.get("kid") == kid]
    if len(found) != 1:
        return None
    # Not at start-up: importing `baton.resource` loads its HTTP client (httpx) too.
    from baton.resource.jose import public_key, signature_valid

    key = public_key(found[0])
    if key is None or not signature_valid(token, key, alg):
        return None
    claims = _json_part(payload_part)
    if claims is None or claims.get("iss") != issuer:
        return None
    # Back-Channel Logout §2.4: a logout token holds `events`, an ID token never does.
    if "events" in claims:
        return None
    # Core §2: `iat` is REQUIRED, "a JSON number"; a token without it is no ID token of ours.
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return None
    sub, aud, azp, sid = claims.get("sub"), claims.get("aud"), claims.get("azp"), claims.get("sid")
    if isinstance(aud, str):
        aud = [aud]
    if (
        not isinstance(sub, str)
        or not sub
        or not isinstance(aud, list)
        or not aud
        or not all(isinstance(a, str) for a in aud)
        or not (azp is None or isinstance(azp, str))
        or not (sid is None or isinstance(sid, str))
    ):
        return None
    return IdTokenHint(sub=sub, aud=tuple(aud), azp=azp, sid=sid)


# A header or claims set of an ID token of ours is a few hundred bytes; a part far larger (or
# nested deep enough to exhaust the parser's recursion) is no hint, read before any signature.
_MAX_PART = 4096


def _json_part(part: str) -> dict[str, Any] | None:
    """A base64url part of a compact JWS as a JSON object, or None."""
    if len(part) > _MAX_PART:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
