"""The sealed replay: a child token response only the holder of the parent token can open.

The key is derived with HKDF-SHA256 from the parent refresh token's plaintext, which the server
never stores; a stolen database yields ciphertexts nobody can open. The digest is both the HKDF
salt and the AES-GCM associated data, binding a seal to the row it was stored on.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_INFO = b"baton/replay/v1"
_NONCE_LEN = 12
_TAG_LEN = 16


def hkdf_sha256_32(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256 with an output of 32 bytes: one HMAC to extract, one to expand.

    The same bytes as `cryptography`'s `HKDF(SHA256(), length=32, ...)`, which it replaces on
    every rotation: that object cost 42,000 instructions a call (callgrind), these two
    `hmac.digest` calls a fraction of it.
    """
    prk = hmac.digest(salt, ikm, "sha256")  # §2.2: PRK = HMAC-Hash(salt, IKM)
    return hmac.digest(prk, info + b"\x01", "sha256")  # §2.3: T(1) = HMAC-Hash(PRK, info | 0x01)


def _key(token: str, token_digest: bytes) -> bytes:
    return hkdf_sha256_32(token.encode("utf-8"), token_digest, _INFO)


def seal(token: str, token_digest: bytes, payload: bytes) -> bytes:
    return sealer(token, token_digest)(payload)


def sealer(token: str, token_digest: bytes) -> Callable[[bytes], bytes]:
    """`seal` in two steps: the key derivation now, the encryption when the payload is known
    (inside the rotation's transaction, which should hold its lock as briefly as possible).
    The first seal's nonce is drawn now too, so that the transaction makes no system call for
    it; each further seal with the key (an ID token's) draws a nonce of its own."""
    aead = AESGCM(_key(token, token_digest))
    nonces = [os.urandom(_NONCE_LEN)]

    def seal_payload(payload: bytes) -> bytes:
        nonce = nonces.pop() if nonces else os.urandom(_NONCE_LEN)
        return nonce + aead.encrypt(nonce, payload, token_digest)

    return seal_payload


def open_seal(token: str, token_digest: bytes, sealed: bytes) -> bytes | None:
    """The payload, or None if this token cannot open the seal (or it is damaged)."""
    return opener(token, token_digest)(sealed)


def opener(token: str, token_digest: bytes) -> Callable[[bytes], bytes | None]:
    """`open_seal` with the key derived once, for the seals one token opens (a replay's pair
    and its ID token)."""
    aead = AESGCM(_key(token, token_digest))

    def open_payload(sealed: bytes) -> bytes | None:
        if len(sealed) < _NONCE_LEN + _TAG_LEN:
            return None
        try:
            return aead.decrypt(sealed[:_NONCE_LEN], sealed[_NONCE_LEN:], token_digest)
        except InvalidTag:
            return None

    return open_payload
