"""Reading back an ID token Baton issued (`id_token_hint`, OIDC Core §3.1.2.1, RP-Initiated
Logout §2).

STAND-IN of the logout branch, written against the signature in the issue's common decisions,
until the authorization-request branch (`oidcauthz`) commits its own: take theirs at the merge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from baton.core.jwa import JoseKey, registry
from baton.core.keys import looks_like_jwt
from baton.server.runtime.context import Baton


@dataclass(frozen=True, slots=True)
class IdTokenHint:
    sub: str
    aud: tuple[str, ...]
    azp: str | None
    sid: str | None

    @property
    def client_id(self) -> str | None:
        """The client the ID token was issued to: `azp`, or its single audience."""
        if self.azp is not None:
            return self.azp
        return self.aud[0] if len(self.aud) == 1 else None


def read_id_token_hint(app: Baton, token: str) -> IdTokenHint | None:
    """The ID token's claims if Baton signed it (a key of its JWKS) and its `iss` is Baton's;
    an expired one too (§3.1.2.1 allows it). None for anything else."""
    if not looks_like_jwt(token):
        return None
    try:
        unverified = jws.extract_compact(token.encode())
        header = unverified.headers()
    except (JoseError, ValueError):
        return None
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or not isinstance(alg, str):
        return None
    published = {k.get("kid"): k for k in app.keys.jwks(app.clock.now())["keys"]}
    jwk = published.get(kid)
    # The header's `alg` must be the key's own (never `none`, never another algorithm's check).
    if jwk is None or jwk.get("alg") != alg:
        return None
    key: JoseKey
    try:
        kty = jwk.get("kty")
        if kty == "EC":
            key = ECKey.import_key(jwk)
        elif kty == "RSA":
            key = RSAKey.import_key({k: v for k, v in jwk.items() if k != "key_ops"})
        else:
            key = OKPKey.import_key(jwk)
        verified = jws.deserialize_compact(token, key, registry=registry(alg))
        claims = json.loads(verified.payload)
    except (JoseError, ValueError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != app.settings.issuer.rstrip("/"):
        return None
    sub, aud, azp, sid = claims.get("sub"), claims.get("aud"), claims.get("azp"), claims.get("sid")
    audiences = (
        (aud,) if isinstance(aud, str) else tuple(a for a in aud or () if isinstance(a, str))
    )
    if not isinstance(sub, str) or not audiences:
        return None
    return IdTokenHint(
        sub=sub,
        aud=audiences,
        azp=azp if isinstance(azp, str) else None,
        sid=sid if isinstance(sid, str) else None,
    )
