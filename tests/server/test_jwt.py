"""JWT access tokens (RFC 9068): claims, keys at rest, the JWKS, rotation of signing keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.keys import KeyEncryptionError, generate, key_encryption_key, unseal
from baton.store.sql import SQLStore
from tests.audience import register
from tests.support import (
    ISSUER,
    RegisteredClient,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

KEK = "correct horse battery staple, 32+ chars"
JwtServer = tuple[TestClient, SQLStore, FakeClock, RegisteredClient, RegisteredClient]


@pytest.fixture
def jwt_server(database: Path | str) -> Iterator[JwtServer]:
    with running_app(database, access_token_format="jwt", key_encryption_key=KEK) as running:
        http, store, clock = running
        register_user(store)
        yield (
            http,
            store,
            clock,
            register_client(store),
            register_client(store, resource_server=True),
        )


def decode(http: TestClient, token: str, audience: str = ISSUER) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in http.get("/jwks.json").json()["keys"]}
    key = jwt.PyJWK(keys[header["kid"]])
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience=audience,
        issuer=ISSUER,
        options={"verify_exp": False},
    )
    return claims


def test_access_tokens_are_rfc_9068_jwts(jwt_server: JwtServer) -> None:
    http, _store, clock, client, rs = jwt_server
    pair = first_pair(http, client)
    token = pair["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    claims = decode(http, token)
    assert claims["sub"] == "alice"
    assert claims["client_id"] == client.id
    assert claims["scope"] == "read write"
    assert claims["iat"] == clock.now()
    assert claims["exp"] == clock.now() + 3600
    seen = introspect(http, rs, token)
    assert seen["active"] is True
    assert seen["jti"] == claims["jti"]
    assert seen["grant_id"] == claims["grant_id"]
    assert pair["refresh_token"].startswith("bat_rt_")
    assert http.get("/.well-known/oauth-authorization-server").json()["jwks_uri"] == (
        f"{ISSUER}/jwks.json"
    )


def test_rotation_replay_and_revocation_work_alike(jwt_server: JwtServer) -> None:
    http, _store, _clock, client, rs = jwt_server
    pair = first_pair(http, client)
    child = refresh(http, client, pair["refresh_token"]).json()
    again = refresh(http, client, pair["refresh_token"]).json()
    assert again["access_token"] == child["access_token"]  # the same signed token, replayed
    events = http.get("/revocations", auth=rs.basic).json()["events"]
    assert events[0]["jti"] == decode(http, pair["access_token"])["jti"]
    http.post("/revoke", data={"token": child["access_token"]}, auth=client.basic)
    assert introspect(http, rs, child["access_token"])["active"] is False


def test_resource_indicator_becomes_the_audience(jwt_server: JwtServer) -> None:
    http, store, _clock, _client, _rs = jwt_server
    register(store, resource_uri="https://api.example/", name="api")
    register(store, resource_uri="https://other.example/", name="other")
    client = register(store, allowed=["https://api.example/", "https://other.example/"])
    response = http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": "https://api.example/"},
        auth=client.basic,
    )
    claims = decode(http, response.json()["access_token"], audience="https://api.example/")
    assert claims["aud"] == "https://api.example/"
    assert claims["sub"] == client.id  # RFC 9068 §2.2: no user, the client is the subject
    # None named: every resource the client is allowed, an array (RFC 7519 §4.1.3).
    every = http.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
    claims = decode(http, every.json()["access_token"], audience="https://other.example/")
    assert claims["aud"] == ["https://api.example/", "https://other.example/"]
    for resource in ("api#x", "https://elsewhere.example/"):
        bad = http.post(
            "/token",
            data={"grant_type": "client_credentials", "resource": resource},
            auth=client.basic,
        )
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_target"


def test_private_keys_are_sealed_at_rest(jwt_server: JwtServer) -> None:
    _http, store, _clock, _client, _rs = jwt_server
    (stored,) = anyio.run(store.signing_keys)
    assert b"PRIVATE KEY" not in stored.private_key
    assert "d" not in json.loads(stored.public_jwk)  # the JWKS half holds no private part
    unseal(stored, key_encryption_key(KEK))
    with pytest.raises(KeyEncryptionError):
        unseal(stored, key_encryption_key("another key-encryption key, 32 chars"))


def test_a_rotated_key_is_published_before_it_signs(jwt_server: JwtServer) -> None:
    http, store, clock, client, _rs = jwt_server
    old_kid = jwt.get_unverified_header(first_pair(http, client)["access_token"])["kid"]
    kek = key_encryption_key(KEK)
    new = generate("EdDSA", clock.now(), clock.now() + 600, kek)
    anyio.run(store.add_signing_key, new, clock.now() + 600 + 3600)
    app = http.app
    anyio.run(lambda: app.state.baton.keys.reload(clock.now()))  # type: ignore[attr-defined]
    kids = [k["kid"] for k in http.get("/jwks.json").json()["keys"]]
    assert kids == [old_kid, new.kid]  # published now...
    token = first_pair(http, client)["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == old_kid  # ...but not signing yet
    clock.advance(600)
    token = first_pair(http, client)["access_token"]
    assert jwt.get_unverified_header(token) | {"alg": "EdDSA"} == jwt.get_unverified_header(token)
    assert jwt.get_unverified_header(token)["kid"] == new.kid
    clock.advance(3600)  # the last token signed by the old key has expired: it leaves the JWKS
    assert [k["kid"] for k in http.get("/jwks.json").json()["keys"]] == [new.kid]
