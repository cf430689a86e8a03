"""Baton 0.1.0, as far as a rolling upgrade meets it: the Ed25519 key it stored (`EdDSA`, in the
row and in its JWK) and its resource servers' rule for a JWT's signature (the token's `alg` must
be the one its key is published for; a known `kid` is not fetched again)."""

from __future__ import annotations

import base64
import json
import warnings
from dataclasses import replace
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from baton.core.keys import StoredKey, generate

# What a 0.1.0 `baton.resource.Verifier` accepted by default.
ALGORITHMS = ("ES256", "RS256", "EdDSA", "Ed25519")


def stored_ed25519_key(now: int, activates_at: int, kek: bytes) -> StoredKey:
    """An Ed25519 key as 0.1.0 generated and stored it: `alg` is `EdDSA` in the row and in the
    JWK (members in the same order; the private half sealed the same way)."""
    key = generate("Ed25519", now, activates_at, kek)
    jwk = json.loads(key.public_jwk) | {"alg": "EdDSA"}
    return replace(key, alg="EdDSA", public_jwk=json.dumps(jwk))


def header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return decoded


def accepts(key_set: dict[str, Any], token: str) -> bool:
    """Whether a 0.1.0 resource server holding `key_set` accepts the signature of `token`: its
    `alg` allowed, the key named by `kid` published for that `alg` (or for none), and the
    signature valid (joserfc, as 0.1.0 called it; its EdDSA warning was filtered there)."""
    alg, kid = header(token).get("alg"), header(token).get("kid")
    jwk = next((k for k in key_set["keys"] if k.get("kid") == kid), None)
    if alg not in ALGORITHMS or jwk is None:
        return False
    key = import_key(jwk)
    if key.alg is not None and key.alg != alg:
        return False  # 0.1.0: "the key is not for this algorithm"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jws.deserialize_compact(token, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        return False
    return True
