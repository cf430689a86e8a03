"""examples/oidc_rp.py's ID token validation, on its own: an ID token signed with each algorithm
the discovery document advertises is accepted, and one with the wrong nonce, audience, issuer,
`at_hash` or key is refused (tests/e2e/test_oidc_example.py runs the whole example against a
real server)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from baton.server.endpoints.metadata import ID_TOKEN_ALGS

ISSUER = "https://baton.example"
CLIENT_ID = "cl_rp"
ACCESS_TOKEN = "bat_at_example"


@pytest.fixture
def example() -> Iterator[ModuleType]:
    sys.modules.pop("examples.oidc_rp", None)
    yield importlib.import_module("examples.oidc_rp")
    sys.modules.pop("examples.oidc_rp", None)


def new_key(alg: str) -> Any:
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters={"kid": "k-rs", "alg": alg})
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters={"kid": "k-es", "alg": alg})
    return OKPKey.generate_key("Ed25519", parameters={"kid": "k-ed", "alg": alg})


def at_hash(token: str, alg: str = "RS256") -> str:
    """Core §3.1.3.6: the left half of the hash the algorithm uses (SHA-512 for Ed25519)."""
    digest = (hashlib.sha512 if alg == "Ed25519" else hashlib.sha256)(token.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def json(self) -> dict[str, Any]:
        return self.body


def relying_party(example: ModuleType, monkeypatch: pytest.MonkeyPatch, key: Any) -> Any:
    published = dict(KeySet([key]).as_dict(private=False))
    monkeypatch.setattr(example.requests, "get", lambda url, timeout: Response(published))
    rp = example.RelyingParty.__new__(example.RelyingParty)
    rp.config = {
        "issuer": ISSUER,
        "jwks_uri": ISSUER + "/jwks.json",
        "id_token_signing_alg_values_supported": ID_TOKEN_ALGS,
    }
    rp.client_id = CLIENT_ID
    return rp


def id_token(key: Any, alg: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "auth_time": now - 5,
        "nonce": "n-1",
        "at_hash": at_hash(ACCESS_TOKEN, alg),
        **changes,
    }
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


# Authlib (1.9) computes `at_hash` for `EdDSA` but not for RFC 9864's `Ed25519`, so it refuses
# such an ID token that carries one: docs/oidc.md tells Authlib relying parties to pick RS256 or
# ES256. Marked, not hidden: the day Authlib learns the name, this passes (and says so).
AUTHLIB_KNOWS = [
    alg
    if alg != "Ed25519"
    else pytest.param(alg, marks=pytest.mark.xfail(reason="Authlib: no at_hash for Ed25519"))
    for alg in ID_TOKEN_ALGS
]


@pytest.mark.parametrize("alg", AUTHLIB_KNOWS)
def test_an_id_token_of_each_advertised_algorithm_is_accepted(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, alg: str
) -> None:
    key = new_key(alg)
    rp = relying_party(example, monkeypatch, key)
    token = {"id_token": id_token(key, alg), "access_token": ACCESS_TOKEN}
    claims = rp.validated(token, nonce="n-1")
    assert (claims["sub"], claims["aud"]) == ("alice", CLIENT_ID)
    # A refreshed ID token has no nonce (Core §12.2) and none is expected.
    refreshed = {"id_token": id_token(key, alg, nonce=None), "access_token": ACCESS_TOKEN}
    assert rp.validated(refreshed)["sub"] == "alice"


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": "another"},
        {"aud": "cl_other"},
        {"iss": "https://evil.example"},
        {"at_hash": at_hash("bat_at_another")},
        {"exp": int(time.time()) - 3600},
    ],
    ids=["nonce", "aud", "iss", "at_hash", "exp"],
)
def test_a_wrong_id_token_is_refused(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any]
) -> None:
    key = new_key("RS256")
    rp = relying_party(example, monkeypatch, key)
    token = {"id_token": id_token(key, "RS256", **changes), "access_token": ACCESS_TOKEN}
    with pytest.raises(Exception):  # noqa: B017 - Authlib's and joserfc's errors alike
        rp.validated(token, nonce="n-1")


def test_an_id_token_signed_by_another_key_is_refused(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    rp = relying_party(example, monkeypatch, new_key("RS256"))
    forged = new_key("RS256")
    token = {"id_token": id_token(forged, "RS256"), "access_token": ACCESS_TOKEN}
    with pytest.raises(Exception):  # noqa: B017
        rp.validated(token, nonce="n-1")


def test_the_docs_show_the_example_as_it_is() -> None:
    """docs/openid-connect.md's relying party is examples/oidc_rp.py's, line for line (its
    `main` aside)."""
    root = Path(__file__).parents[2]
    page = (root / "docs" / "openid-connect.md").read_text()
    section = page.split("## A relying party in Python with Authlib", 1)[1]
    shown = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "class RelyingParty" in shown
    assert shown.strip() in (root / "examples" / "oidc_rp.py").read_text()
