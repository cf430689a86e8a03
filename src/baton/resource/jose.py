"""The JOSE half of `baton.resource` (joserfc): JWK import and JWS signature checks.

Only this module imports joserfc, and only `JwksCache` imports this module, when a JWT first
needs a key (see `jwks.load_jose`): `baton.resource` imports, and verifies opaque tokens, without
the `jose` extra.

Ed25519 signatures have two names: RFC 8037's `EdDSA` (either Edwards curve) and RFC 9864's
fully-specified `Ed25519`, which Baton emits since RFC 9864. Both verify here, and a key published
under either name verifies a token under the other: tokens minted before the rename outlive it,
and the JWKS names the key `Ed25519` once the server is upgraded. joserfc warns (SecurityWarning)
whenever its registry hands out `EdDSA`; the registries below carry their own algorithm models
for the Edwards names, so verifying an `EdDSA` token warns nothing, without touching the host
application's warning filters (a `warnings.filterwarnings` is process-wide, and
`warnings.catch_warnings` is not thread-safe).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import InvalidKeyTypeError, JoseError, UnsupportedKeyAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

PublicKey = ECKey | RSAKey | OKPKey

LEGACY_EDDSA = "EdDSA"  # RFC 8037: Ed25519 or Ed448, the curve told by the key
# RFC 9864 names the Edwards curve in the algorithm; RFC 8037's EdDSA covers both of them.
_EDWARDS_CURVES = {LEGACY_EDDSA: frozenset({"Ed25519", "Ed448"})} | {
    curve: frozenset({curve}) for curve in ("Ed25519", "Ed448")
}

# Private members of EC, RSA and OKP JWKs: a JWKS should never carry them; drop them if it does.
_PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def key_allows(key: PublicKey, alg: str) -> bool:
    """Whether `key` may check a signature made with `alg`: a key published without `alg`, or
    for `alg` itself, or an Edwards key published under the other name of its curve's
    signature (`EdDSA` for `Ed25519`, and back)."""
    designed = key.get("alg")
    if not designed or designed == alg:
        return True
    if not isinstance(key, OKPKey) or key.curve_name not in _EDWARDS_CURVES.get(alg, ()):
        return False
    return designed in (LEGACY_EDDSA, key.curve_name)


class _EdwardsAlgorithm(JWSAlgModel):
    """joserfc's model for an Edwards algorithm name, with the key check of `key_allows` and no
    security warning: `EdDSA` stays accepted, on purpose, as the old name of `Ed25519`."""

    key_type = "OKP"

    def __init__(self, model: JWSAlgModel) -> None:
        self.name = model.name
        self.description = model.description
        self._model = model

    def check_key(self, key: Any) -> None:
        key.check_use("sig")
        if not isinstance(key, OKPKey) or key.curve_name not in _EDWARDS_CURVES[self.name]:
            raise InvalidKeyTypeError(f"Algorithm '{self.name}' requires an Edwards OKP key")
        if not key_allows(key, self.name):
            raise UnsupportedKeyAlgorithmError(f"This key is designed for {key.get('alg')!r}")

    def sign(self, msg: bytes, key: Any) -> bytes:
        return self._model.sign(msg, key)

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        return self._model.verify(msg, sig, key)


class _Registry(JWSRegistry):
    """joserfc's JWS algorithms, the Edwards ones replaced by `_EdwardsAlgorithm`; a class of its
    own so that joserfc's shared registry (and every other user of it) is left as it is."""

    algorithms = {
        name: _EdwardsAlgorithm(model) if name in _EDWARDS_CURVES else model
        for name, model in JWSRegistry.algorithms.items()
    }


_registries: dict[str, _Registry] = {}


def _registry(alg: str) -> _Registry:
    """A registry that allows `alg` alone (read-only once built, shared by every thread)."""
    registry = _registries.get(alg)
    if registry is None:
        registry = _registries[alg] = _Registry(algorithms=[alg])
    return registry


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
        jws.deserialize_compact(token, key, registry=_registry(alg))
    except (JoseError, ValueError, TypeError):
        return False
    return True
