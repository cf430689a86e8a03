"""The JWS algorithms (RFC 7518) both sides of Baton use with joserfc: the server to sign its
access tokens (`core.keys`), `baton.resource` to check them (`resource.jose`).

Ed25519 signatures have two names: RFC 8037's `EdDSA` (either Edwards curve, the key tells
which) and RFC 9864's fully-specified `Ed25519`. Baton keys made before the rename are stored,
sign and are published as `EdDSA` until they are rotated out (resource servers of 0.1.0 require
a token's `alg` to equal its key's); newer ones use `Ed25519`; a verifier accepts either name for
the other. joserfc warns (SecurityWarning) whenever its registry hands out `EdDSA`: the
registries here carry their own models of the Edwards names, which sign and verify exactly as
joserfc's and warn nothing, without touching the process's warning filters (a
`warnings.filterwarnings` is process-wide, and `warnings.catch_warnings` is not thread-safe).
joserfc's shared registry, and every other user of it, is left as it is.

Only `core.keys` (the server) and `resource.jose` (loaded with the first JWT key set) import this
module: `baton.resource` imports, and verifies opaque tokens, without joserfc.
"""

from __future__ import annotations

from typing import Any

from joserfc.errors import InvalidKeyTypeError, UnsupportedKeyAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

JoseKey = ECKey | RSAKey | OKPKey

LEGACY_EDDSA = "EdDSA"  # RFC 8037: Ed25519 or Ed448, the curve told by the key
# RFC 9864 names the Edwards curve in the algorithm; RFC 8037's EdDSA covers both of them.
_EDWARDS_CURVES = {LEGACY_EDDSA: frozenset({"Ed25519", "Ed448"})} | {
    curve: frozenset({curve}) for curve in ("Ed25519", "Ed448")
}


def key_allows(key: JoseKey, alg: str) -> bool:
    """Whether `key` may make or check a signature with `alg`: a key published without `alg`,
    or for `alg` itself, or an Edwards key published under the other name of its curve's
    signature (`EdDSA` for `Ed25519`, and back)."""
    designed = key.get("alg")
    if not designed or designed == alg:
        return True
    if not isinstance(key, OKPKey) or key.curve_name not in _EDWARDS_CURVES.get(alg, ()):
        return False
    return designed in (LEGACY_EDDSA, key.curve_name)


class _EdwardsAlgorithm(JWSAlgModel):
    """joserfc's model for an Edwards algorithm name, with the key check of `key_allows` and no
    security warning: `EdDSA` stays in use, on purpose, as the old name of `Ed25519`."""

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
    own so that joserfc's shared registry is left as it is."""

    algorithms = {
        name: _EdwardsAlgorithm(model) if name in _EDWARDS_CURVES else model
        for name, model in JWSRegistry.algorithms.items()
    }


_registries: dict[str, JWSRegistry] = {}


def registry(alg: str) -> JWSRegistry:
    """A registry that allows `alg` alone, for `jws.serialize_compact` and
    `jws.deserialize_compact` (built once, read-only afterwards, shared by every thread)."""
    found = _registries.get(alg)
    if found is None:
        found = _registries[alg] = _Registry(algorithms=[alg])
    return found
