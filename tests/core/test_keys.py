"""Signing keys and the JWTs they sign, without a server: algorithm names (RFC 9864), the JWK
each key publishes, and the exact shape of a token's header and claims."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from baton.core.keys import (
    ALGORITHM_CHOICES,
    JwtAccessTokens,
    SigningKey,
    StoredKey,
    algorithm,
    generate,
    jwks,
    unseal,
)
from baton.core.pairs import AccessClaims
from baton.resource import JwksCache
from baton.resource.jose import signature_valid
from tests import release_0_1_0

ROOT = Path(__file__).resolve().parents[2]
KEK = b"k" * 32
CLAIMS = AccessClaims(
    jti="jti_1",
    issued_at=1000,
    expires_at=4600,
    scope="read write",
    grant_id="grt_1",
    client_id="app",
    subject="alice",
    audience=("https://api.example/",),
)


def segment(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def signing(stored: StoredKey) -> SigningKey:
    return SigningKey(stored, unseal(stored, KEK))


def signed_by(key: SigningKey) -> JwtAccessTokens:
    return JwtAccessTokens("https://as.example", "https://as.example", lambda _now: key)


def test_eddsa_is_the_old_name_of_ed25519() -> None:
    assert ALGORITHM_CHOICES == ("ES256", "RS256", "Ed25519", "EdDSA")
    assert [algorithm(name) for name in ALGORITHM_CHOICES] == ["ES256", "RS256"] + ["Ed25519"] * 2
    for name in ("HS256", "none", "Ed448", "es256"):
        with pytest.raises(ValueError, match="unsupported algorithm"):
            algorithm(name)
    made = generate("EdDSA", 0, 0, KEK)
    assert made.alg == "Ed25519" and json.loads(made.public_jwk)["alg"] == "Ed25519"


@pytest.mark.parametrize(
    ("alg", "members"),
    [
        ("ES256", ["kty", "crv", "x", "y", "kid", "alg", "use"]),
        ("RS256", ["kty", "key_ops", "n", "e", "kid", "alg", "use"]),
        ("Ed25519", ["x", "kty", "crv", "kid", "alg", "use"]),
    ],
)
def test_a_new_key_publishes_the_jwk_baton_always_published(alg: str, members: list[str]) -> None:
    stored = generate(alg, 0, 0, KEK)
    jwk = json.loads(stored.public_jwk)
    assert list(jwk) == members
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == (stored.kid, alg, "sig")
    assert jwk.get("key_ops", ["verify"]) == ["verify"]
    assert "d" not in jwk


def test_a_key_stored_as_eddsa_keeps_its_name() -> None:
    """A key 0.1.0 stored as `EdDSA` signs tokens that say `EdDSA` and is published as `EdDSA`
    (its resource servers require the two to match); a new Ed25519 key says `Ed25519` in both.
    Each token passes 0.1.0's rule and `baton.resource`'s."""
    old = release_0_1_0.stored_ed25519_key(0, 0, KEK)
    new = generate("Ed25519", 0, 0, KEK)
    assert (old.alg, json.loads(old.public_jwk)["alg"]) == ("EdDSA", "EdDSA")
    key_set = jwks([old, new], 1)
    assert key_set["keys"] == [json.loads(old.public_jwk), json.loads(new.public_jwk)]
    assert [k["alg"] for k in key_set["keys"]] == ["EdDSA", "Ed25519"]
    for stored, alg in ((old, "EdDSA"), (new, "Ed25519")):
        key = signing(stored)
        assert key.alg == alg
        token = signed_by(key).issue(CLAIMS)
        assert release_0_1_0.header(token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
        assert release_0_1_0.accepts(key_set, token)
        cache = JwksCache("https://as.example/jwks.json")
        cache.load(key_set)
        published = cache.get(key.kid)
        assert published is not None and signature_valid(token, published, alg)


def test_signing_as_eddsa_warns_nothing_and_filters_nothing() -> None:
    """joserfc warns whenever its registry hands out `EdDSA`; Baton's own registry does not, and
    the server's warning filters stay as they were (`-W error`: any warning would fail)."""
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            textwrap.dedent(
                """
                import sys
                import warnings

                sys.path[:0] = sys.argv[1:]
                from baton.core.keys import JwtAccessTokens, SigningKey, unseal
                from tests.core.test_keys import CLAIMS, KEK
                from tests.release_0_1_0 import stored_ed25519_key

                before = list(warnings.filters)
                stored = stored_ed25519_key(0, 0, KEK)
                key = SigningKey(stored, unseal(stored, KEK))
                tokens = JwtAccessTokens("https://as.example", "https://as.example", lambda n: key)
                print(tokens.issue(CLAIMS).count("."))
                assert warnings.filters == before
                """
            ),
            str(ROOT / "src"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("2\n", "")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "Ed25519"])
def test_token_header_and_claims_keep_their_bytes(alg: str) -> None:
    """The header and claims of Baton's tokens, byte for byte (compact JSON, this order): only
    the Ed25519 algorithm's name changed, from EdDSA."""
    key = signing(generate(alg, 0, 0, KEK))
    tokens = JwtAccessTokens("https://as.example", "https://as.example", lambda _now: key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated algorithm name, no warning
        head, payload, signature = tokens.issue(CLAIMS).split(".")
    assert segment(head) == (
        b'{"alg":"%s","kid":"%s","typ":"at+jwt"}' % (alg.encode(), key.kid.encode())
    )
    assert segment(payload) == (
        b'{"iss":"https://as.example","sub":"alice","aud":"https://api.example/",'
        b'"exp":4600,"iat":1000,"jti":"jti_1","client_id":"app","scope":"read write",'
        b'"grant_id":"grt_1"}'
    )
    assert segment(signature)


def test_a_token_for_the_client_itself_and_several_audiences() -> None:
    key = signing(generate("ES256", 0, 0, KEK))
    tokens = JwtAccessTokens("https://as.example", "https://as.example", lambda _now: key)
    claims = replace(CLAIMS, subject=None, audience=("https://a.example/", "https://b.example/"))
    payload: dict[str, Any] = json.loads(segment(tokens.issue(claims).split(".")[1]))
    assert payload["sub"] == "app"
    assert payload["aud"] == ["https://a.example/", "https://b.example/"]
    no_key = JwtAccessTokens("https://as.example", "https://as.example", lambda _now: None)
    with pytest.raises(RuntimeError, match="no signing key"):
        no_key.issue(CLAIMS)
