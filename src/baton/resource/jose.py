"""The JOSE half of `baton.resource` (joserfc): JWK import and JWS signature checks.

Only this module (and `core.jwa`, which it imports) imports joserfc, and only `JwksCache`
imports this module, when a JWT first needs a key (see `jwks.load_jose`): `baton.resource`
imports, and verifies opaque tokens, without the `jose` extra.

Both names of the Ed25519 signature (`EdDSA`, RFC 8037, and `Ed25519`, RFC 9864) verify here,
and a key published under either name verifies a token under the other, with no warning and no
change to the host application's warning filters: the algorithms are `core.jwa`'s, which the
server signs with too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from baton.core.jwa import JoseKey, registry

PublicKey = JoseKey

# Private members of EC, RSA and OKP JWKs: a JWKS should never carry them; drop them if it does.
_PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def public_key(member: Mapping[str, Any]) -> PublicKey | None:
    """The public key of one JWK Set member, or None if it is not an EC, RSA or OKP key."""
    public = {name: value for name, value in member.items() if name not in _PRIVATE}
    try:
        key = import_key(public)
    except (JoseError, ValueError, TypeError):
        return None
    return key if isinstance(key, ECKey | RSAKey | OKPKey) else None


def signature_valid(token: str, key: PublicKey, alg: str) -> bool:
    """Whether the compact JWS `token` carries a valid `alg` signature by `key`; the token's
    header must name `alg` (its own registry allows no other)."""
    try:
        jws.deserialize_compact(token, key, registry=registry(alg))
    except (JoseError, ValueError, TypeError):
        return False
    return True
