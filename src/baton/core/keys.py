"""Signing keys for JWT access tokens (RFC 9068), and the tokens they sign.

A key is published (in the JWKS) from its creation, signs from `activates_at`, and leaves the
JWKS at `retires_at`; `baton keys rotate` publishes the next key before it signs, so resource
servers that cache the JWKS already know it when the first token signed with it arrives. Private
keys are stored encrypted (AES-256-GCM) under a key derived from the operator's key-encryption
key, which never reaches the database.

Tokens are signed with joserfc, through `core.jwa`'s registries. A new Ed25519 key is stored,
signs and is published as `Ed25519` (RFC 9864's fully-specified name); `EdDSA`, RFC 8037's name
for it, is still accepted as input (`--alg`, `--signing-alg`). A key stored as `EdDSA` (by
0.1.0) keeps that name in its tokens and in the JWKS until it is rotated out: a resource server
of 0.1.0 requires a token's `alg` to equal its key's, and knows no `Ed25519`; the new name
arrives with the next key, published ahead like any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from baton.core.audience import aud_claim
from baton.core.jwa import LEGACY_EDDSA, JoseKey, registry
from baton.core.pairs import AccessClaims
from baton.core.tokens import random_id

ALGORITHMS = ("ES256", "RS256", "Ed25519")
# Old names accepted as input (a new key gets the current name); a key stored under one before
# the rename keeps signing under it.
LEGACY_ALGORITHMS = {LEGACY_EDDSA: "Ed25519"}  # RFC 8037's EdDSA, RFC 9864's Ed25519
ALGORITHM_CHOICES = (*ALGORITHMS, *LEGACY_ALGORITHMS)  # what `--alg` and `--signing-alg` take
_KEK_INFO = b"baton/key-encryption/v1"
_NONCE_LEN = 12

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def algorithm(name: str) -> str:
    """The algorithm a key is generated and signs with: `name`, or the current name of an old
    one (`EdDSA` is `Ed25519`)."""
    alg = LEGACY_ALGORITHMS.get(name, name)
    if alg not in ALGORITHMS:
        choices = ", ".join(ALGORITHM_CHOICES)
        raise ValueError(f"unsupported algorithm {name!r}: choose one of {choices}")
    return alg


class KeyEncryptionError(ValueError):
    """The key-encryption key is missing, too short, or not the one the keys were sealed with."""


def key_encryption_key(secret: str) -> bytes:
    """The AES key derived from the operator's secret (at least 32 characters)."""
    if len(secret) < 32:
        raise KeyEncryptionError("the key-encryption key must be at least 32 characters")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO)
    return hkdf.derive(secret.encode("utf-8"))


@dataclass(frozen=True)
class StoredKey:
    """A signing key as the database holds it: the private half sealed under the KEK. `alg` is
    the name the key signs and is published under, as it was stored (`EdDSA` for an Ed25519 key
    made before the rename)."""

    kid: str
    alg: str
    public_jwk: str
    private_key: bytes = field(repr=False)
    created_at: int
    activates_at: int
    retires_at: int | None
    # None: signs access tokens and ID tokens; "id_token": made for an ID token algorithm that no
    # other key had, it never signs access tokens.
    purpose: str | None = None

    def published(self, now: int) -> bool:
        return self.created_at <= now and (self.retires_at is None or now < self.retires_at)


@dataclass(frozen=True)
class SigningKey:
    """A stored key with its private half opened, ready to sign."""

    stored: StoredKey
    private_key: PrivateKey = field(repr=False)

    @property
    def kid(self) -> str:
        return self.stored.kid

    @property
    def alg(self) -> str:
        return self.stored.alg

    @cached_property
    def jose_key(self) -> JoseKey:
        """The private key as joserfc signs with it (converted once per key and reload)."""
        return _jose_key(self.private_key)


def _jose_key(key: PrivateKey) -> JoseKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAKey.import_key(key)
    return OKPKey.import_key(key)


def _public_jwk(private: PrivateKey) -> dict[str, Any]:
    """The public JWK of a new key, its members in the order the JWKS has always shown them."""
    jwk = _jose_key(private).as_dict(private=False)
    if jwk["kty"] == "EC":
        return {"kty": "EC", "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]}
    if jwk["kty"] == "RSA":
        return {"kty": "RSA", "key_ops": ["verify"], "n": jwk["n"], "e": jwk["e"]}
    return {"x": jwk["x"], "kty": "OKP", "crv": jwk["crv"]}


def generate(name: str, now: int, activates_at: int, kek: bytes) -> StoredKey:
    """A new key for `name` (an old name stands for the current one), sealed under `kek`."""
    alg = algorithm(name)
    private: PrivateKey
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    kid = random_id("key_", 12)
    jwk = _public_jwk(private) | {"kid": kid, "alg": alg, "use": "sig"}
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    nonce = os.urandom(_NONCE_LEN)
    sealed = nonce + AESGCM(kek).encrypt(nonce, pem, kid.encode())
    return StoredKey(kid, alg, json.dumps(jwk), sealed, now, activates_at, None)


def unseal(stored: StoredKey, kek: bytes) -> PrivateKey:
    nonce, ciphertext = stored.private_key[:_NONCE_LEN], stored.private_key[_NONCE_LEN:]
    try:
        pem = AESGCM(kek).decrypt(nonce, ciphertext, stored.kid.encode())
    except (InvalidTag, ValueError):
        raise KeyEncryptionError(
            f"signing key {stored.kid} cannot be opened: wrong key-encryption key"
        ) from None
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, PrivateKey):
        raise KeyEncryptionError(f"signing key {stored.kid} holds an unsupported key type")
    return private


def signing_key_at(keys: Sequence[SigningKey], now: int) -> SigningKey | None:
    """The key that signs at `now`: the newest one already active and not retired."""
    active = [k for k in keys if k.stored.activates_at <= now and k.stored.published(now)]
    return max(active, key=lambda k: (k.stored.activates_at, k.stored.created_at), default=None)


def jwks(keys: Sequence[StoredKey], now: int) -> dict[str, Any]:
    """RFC 7517 key set: every key published at `now` (the next one before it signs)."""
    return {"keys": [json.loads(k.public_jwk) for k in keys if k.published(now)]}


class JwtAccessTokens:
    """RFC 9068 access tokens: `typ: at+jwt`, signed by the key active at issue time.

    The header is `alg`, `kid`, `typ` and the claims are compact JSON, in the order written
    below: the bytes of the tokens Baton has always issued."""

    def __init__(
        self,
        issuer: str,
        default_audience: str,
        keys: Callable[[int], SigningKey | None],
    ) -> None:
        self.issuer = issuer
        self.default_audience = default_audience
        self._key_at = keys

    def issue(self, claims: AccessClaims) -> str:
        key = self._key_at(claims.issued_at)
        if key is None:
            raise RuntimeError("no signing key is active: run `baton keys rotate`")
        payload = {
            "iss": self.issuer,
            # RFC 9068 §2.2: for a client acting on its own behalf, sub is the client id.
            "sub": claims.subject if claims.subject is not None else claims.client_id,
            # RFC 9068 §3: the resources the token is for (one: a string; several: an array).
            "aud": aud_claim(claims.audience) if claims.audience else self.default_audience,
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "jti": claims.jti,
            "client_id": claims.client_id,
            "scope": claims.scope,
            "grant_id": claims.grant_id,
        }
        header = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
        body = json.dumps(payload, separators=(",", ":")).encode()
        return jws.serialize_compact(header, body, key.jose_key, registry=registry(key.alg))


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (three base64url parts), small enough to be one of ours."""
    return len(token) < 8192 and token.startswith("eyJ") and token.count(".") == 2
