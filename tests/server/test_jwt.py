"""JWT access tokens (RFC 9068): claims, keys at rest, the JWKS, rotation of signing keys."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.jwk import import_key
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.keys import KeyEncryptionError, generate, key_encryption_key, unseal
from baton.resource import Verifier
from baton.store.sql import SQLStore
from tests import release_0_1_0
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


def published_for_access_tokens(http: TestClient, store: SQLStore) -> list[dict[str, Any]]:
    """The JWKS less the keys made for ID tokens alone (OpenID Connect is on with a
    key-encryption key: `baton.server.runtime.keyring`)."""
    id_token_only = {k.kid for k in anyio.run(store.signing_keys) if k.purpose is not None}
    keys: list[dict[str, Any]] = http.get("/jwks.json").json()["keys"]
    return [k for k in keys if k["kid"] not in id_token_only]


def segment(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def header(token: str) -> dict[str, Any]:
    return segment(token.split(".")[0])


def decode(
    http: TestClient, token: str, audience: str = ISSUER, alg: str = "ES256"
) -> dict[str, Any]:
    """The claims of a token whose signature (by a key of the JWKS), issuer and audience hold."""
    keys = {k["kid"]: k for k in http.get("/jwks.json").json()["keys"]}
    jws.deserialize_compact(token, import_key(keys[header(token)["kid"]]), algorithms=[alg])
    claims = segment(token.split(".")[1])
    assert claims["iss"] == ISSUER
    assert audience in ([claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"])
    return claims


def test_access_tokens_are_rfc_9068_jwts(jwt_server: JwtServer) -> None:
    http, _store, clock, client, rs = jwt_server
    pair = first_pair(http, client)
    token = pair["access_token"]
    assert header(token) == {"alg": "ES256", "kid": header(token)["kid"], "typ": "at+jwt"}
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
    (stored,) = [k for k in anyio.run(store.signing_keys) if k.purpose is None]
    assert b"PRIVATE KEY" not in stored.private_key
    assert "d" not in json.loads(stored.public_jwk)  # the JWKS half holds no private part
    unseal(stored, key_encryption_key(KEK))
    with pytest.raises(KeyEncryptionError):
        unseal(stored, key_encryption_key("another key-encryption key, 32 chars"))


def test_a_rotated_key_is_published_before_it_signs(jwt_server: JwtServer) -> None:
    http, store, clock, client, _rs = jwt_server
    old_kid = header(first_pair(http, client)["access_token"])["kid"]
    kek = key_encryption_key(KEK)
    new = generate("Ed25519", clock.now(), clock.now() + 600, kek)
    anyio.run(store.add_signing_key, new, clock.now() + 600 + 3600)
    app = http.app
    anyio.run(lambda: app.state.baton.keys.reload(clock.now()))  # type: ignore[attr-defined]
    kids = [k["kid"] for k in published_for_access_tokens(http, store)]
    assert kids == [old_kid, new.kid]  # published now...
    token = first_pair(http, client)["access_token"]
    assert header(token)["kid"] == old_kid  # ...but not signing yet
    clock.advance(600)
    token = first_pair(http, client)["access_token"]
    assert header(token) == {"alg": "Ed25519", "kid": new.kid, "typ": "at+jwt"}
    clock.advance(3600)  # the last token signed by the old key has expired: it leaves the JWKS
    assert [k["kid"] for k in published_for_access_tokens(http, store)] == [new.kid]


def through(http: TestClient) -> httpx.MockTransport:
    """A transport that hands a `baton.resource` verifier's requests to the app under test."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = http.request(
            request.method, request.url.path, content=request.content, headers=request.headers
        )
        kind = {"content-type": answer.headers.get("content-type", "")}
        return httpx.Response(answer.status_code, headers=kind, content=answer.content)

    return httpx.MockTransport(handle)


def resource_verifier(http: TestClient, clock: FakeClock, rs: RegisteredClient) -> Verifier:
    assert rs.secret is not None
    return Verifier(
        ISSUER,
        rs.id,
        rs.secret,
        audience=ISSUER,
        feed=False,
        transport=through(http),
        clock=lambda: float(clock.now()),
    )


def independently_verified(http: TestClient, token: str) -> dict[str, Any]:
    """The claims, once a JOSE implementation other than joserfc has checked the signature:
    Authlib's for ES256 and RS256 (its `authlib.jose` knows only the old name EdDSA), and the
    Ed25519 primitive of `cryptography` for Ed25519 (RFC 8037 §3.1: over header.payload)."""
    keys = {k["kid"]: k for k in http.get("/jwks.json").json()["keys"]}
    jwk = keys[header(token)["kid"]]
    if header(token)["alg"] == "Ed25519":
        head, payload, signature = token.split(".")
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        mac = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        Ed25519PublicKey.from_public_bytes(raw).verify(mac, f"{head}.{payload}".encode())
        return segment(payload)
    # authlib.jose warns, once, that it is deprecated (for joserfc), under a filter of its own.
    with warnings.catch_warnings(record=True):
        authlib_jose = pytest.importorskip("authlib.jose")
    claims: dict[str, Any] = dict(
        authlib_jose.jwt.decode(token, authlib_jose.JsonWebKey.import_key(jwk))
    )
    return claims


@pytest.mark.parametrize(
    ("signing_alg", "alg"),
    [("ES256", "ES256"), ("RS256", "RS256"), ("Ed25519", "Ed25519"), ("EdDSA", "Ed25519")],
)
def test_each_algorithm_signs_and_verifies(
    database: Path | str, signing_alg: str, alg: str
) -> None:
    """`--signing-alg EdDSA` still works, and makes an Ed25519 key that signs as `Ed25519`."""
    settings: dict[str, Any] = {"access_token_format": "jwt", "key_encryption_key": KEK}
    with running_app(database, signing_alg=signing_alg, **settings) as (http, store, clock):
        register_user(store)
        client, rs = register_client(store), register_client(store, resource_server=True)
        token = first_pair(http, client)["access_token"]
        (published,) = published_for_access_tokens(http, store)
        assert header(token) == {"alg": alg, "kid": published["kid"], "typ": "at+jwt"}
        assert published["alg"] == alg and published["use"] == "sig"
        claims = independently_verified(http, token)
        assert claims == decode(http, token, alg=alg)
        assert release_0_1_0.accepts(http.get("/jwks.json").json(), token)
        principal = resource_verifier(http, clock, rs).verify(token, "read")
        assert (principal.subject, principal.jti) == ("alice", claims["jti"])


def test_a_key_stored_as_eddsa_keeps_its_name_until_rotated_out(jwt_server: JwtServer) -> None:
    """A rolling upgrade: a key 0.1.0 stored as `EdDSA` goes on signing as `EdDSA` and is
    published so (0.1.0's resource servers require the two to match, and do not refetch a key
    they know); `baton keys rotate --alg EdDSA` publishes an `Ed25519` key ahead, whose tokens
    say `Ed25519`. Every token passes `baton.resource` and 0.1.0's rule with the JWKS served."""
    http, store, clock, client, rs = jwt_server
    kek = key_encryption_key(KEK)
    app = http.app
    old = release_0_1_0.stored_ed25519_key(clock.now(), clock.now(), kek)
    anyio.run(store.add_signing_key, old, clock.now())  # the app's first key (ES256) retires
    clock.advance(1)
    anyio.run(lambda: app.state.baton.keys.reload(clock.now()))  # type: ignore[attr-defined]
    assert [k.alg for k in anyio.run(store.signing_keys) if k.purpose is None][-1] == "EdDSA"
    assert published_for_access_tokens(http, store) == [json.loads(old.public_jwk)]
    before = first_pair(http, client)["access_token"]
    assert header(before) == {"alg": "EdDSA", "kid": old.kid, "typ": "at+jwt"}
    verifier = resource_verifier(http, clock, rs)
    assert verifier.verify(before).subject == "alice"

    new = generate("EdDSA", clock.now(), clock.now() + 600, kek)  # as `keys rotate` makes it
    anyio.run(store.add_signing_key, new, clock.now() + 600 + 3600)
    anyio.run(lambda: app.state.baton.keys.reload(clock.now()))  # type: ignore[attr-defined]
    key_set = http.get("/jwks.json").json()
    assert [(k["kid"], k["alg"]) for k in published_for_access_tokens(http, store)] == [
        (old.kid, "EdDSA"),
        (new.kid, "Ed25519"),
    ]
    assert header(first_pair(http, client)["access_token"])["alg"] == "EdDSA"  # not yet
    clock.advance(600)
    after = first_pair(http, client)["access_token"]
    assert header(after) == {"alg": "Ed25519", "kid": new.kid, "typ": "at+jwt"}
    for token in (before, after):
        assert release_0_1_0.accepts(key_set, token)
        assert verifier.verify(token).subject == "alice"


def test_a_trailing_slash_on_the_issuer_is_not_in_the_tokens_iss(database: Path | str) -> None:
    """RFC 9068 §4 / RFC 8414 §3.3: a token's `iss` is the metadata's `issuer`, which has no
    trailing slash (review finding: JWT access tokens and introspection kept the slash)."""
    settings: dict[str, Any] = {"access_token_format": "jwt", "key_encryption_key": KEK}
    with running_app(database, issuer=ISSUER + "/", **settings) as (http, store, _clock):
        register_user(store)
        client = register_client(store)
        api = register_client(store, resource_server=True)
        pair = first_pair(http, client)
        issuer = http.get("/.well-known/oauth-authorization-server").json()["issuer"]
        assert issuer == ISSUER
        assert segment(pair["access_token"].split(".")[1])["iss"] == issuer
        assert introspect(http, api, pair["access_token"])["iss"] == issuer
