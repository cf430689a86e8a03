"""`id_token_hint` read back (OIDC Core §3.1.2.1, RP-Initiated Logout §2): only an ID token this
server signed, for this issuer, is a hint; an expired one still is."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest
from joserfc import jws

from baton.config.settings import Settings
from baton.core.jwa import registry
from baton.core.keys import SigningKey, StoredKey, generate, unseal
from baton.server.endpoints.hints import IdTokenHint, read_id_token_hint, verify_id_token
from baton.server.endpoints.logout import sign_logout_token
from baton.server.runtime.context import Baton
from baton.server.runtime.keyring import KeyRing

KEK = b"k" * 32
ISSUER = "https://op.example"


class _Keys:
    def __init__(self, stored: list[StoredKey]) -> None:
        self.stored = stored

    async def signing_keys(self) -> list[StoredKey]:
        return self.stored

    async def add_signing_key(self, key: StoredKey, retire_others_at: int | None) -> None:
        self.stored.append(key)


def signing(alg: str) -> SigningKey:
    stored = generate(alg, 0, 0, KEK)
    return SigningKey(stored, unseal(stored, KEK))


def id_token(key: SigningKey, alg: str | None = None, **claims: Any) -> str:
    payload = {"iss": ISSUER, "sub": "alice", "aud": "cl_1", "exp": 100, "iat": 40} | claims
    payload = {k: v for k, v in payload.items() if v is not None}
    header = {"alg": alg or key.alg, "kid": key.kid, "typ": "JWT"}
    body = json.dumps(payload).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry(alg or key.alg))


def app_with(*keys: SigningKey, now: int = 10_000, issuer: str = ISSUER + "/") -> Baton:
    ring = KeyRing(_Keys([k.stored for k in keys]), KEK)
    anyio.run(ring.reload, now)
    fake = SimpleNamespace(
        keys=ring,
        clock=SimpleNamespace(now=lambda: now),
        settings=Settings(issuer=issuer),
    )
    return cast(Baton, fake)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "Ed25519"])
def test_an_expired_id_token_of_ours_is_a_hint(alg: str) -> None:
    key = signing(alg)
    token = id_token(key, sid="s1")
    hint = read_id_token_hint(app_with(key), token)
    assert hint == IdTokenHint(sub="alice", aud=("cl_1",), azp=None, sid="s1")
    assert hint.client_id == "cl_1"


def test_the_old_name_of_ed25519_is_accepted() -> None:
    key = signing("Ed25519")
    assert read_id_token_hint(app_with(key), id_token(key, alg="EdDSA")) is not None


def test_azp_names_the_client_of_a_token_with_several_audiences() -> None:
    key = signing("ES256")
    app = app_with(key)
    hint = read_id_token_hint(app, id_token(key, aud=["cl_1", "api"], azp="cl_2"))
    assert hint is not None and hint.client_id == "cl_2" and hint.aud == ("cl_1", "api")
    several = read_id_token_hint(app, id_token(key, aud=["cl_1", "api"]))
    assert several is not None and several.client_id is None


def test_another_issuer_is_no_hint() -> None:
    key = signing("ES256")
    assert read_id_token_hint(app_with(key), id_token(key, iss="https://evil.example")) is None


def test_a_key_we_do_not_publish_is_no_hint() -> None:
    ours, theirs = signing("ES256"), signing("ES256")
    forged = id_token(theirs)
    # The same kid as ours, signed by another key: the signature check refuses it.
    header = {"alg": "ES256", "kid": ours.kid}
    body = json.dumps({"iss": ISSUER, "sub": "alice", "aud": "cl_1"}).encode()
    same_kid = jws.serialize_compact(header, body, theirs.jose_key, registry=registry("ES256"))
    app = app_with(ours)
    assert read_id_token_hint(app, forged) is None
    assert read_id_token_hint(app, same_kid) is None


def test_a_retired_key_is_no_longer_trusted() -> None:
    key = signing("RS256")
    retired = SigningKey(StoredKey(**{**key.stored.__dict__, "retires_at": 50}), key.private_key)
    assert read_id_token_hint(app_with(retired, now=100), id_token(retired)) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a jwt",
        "eyJ.eyJ.sig",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
        "eyJ" + "A" * 9000 + ".x.y",
    ],
)
def test_malformed_tokens_are_no_hint(token: str) -> None:
    assert read_id_token_hint(app_with(signing("ES256")), token) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": None},
        {"sub": 42},
        {"sub": ""},
        {"aud": None},
        {"aud": []},
        {"aud": [1]},
        {"azp": 3},
        {"sid": ["s"]},
    ],
)
def test_claims_of_the_wrong_shape_are_no_hint(claims: dict[str, Any]) -> None:
    key = signing("ES256")
    assert read_id_token_hint(app_with(key), id_token(key, **claims)) is None


def test_a_header_naming_another_algorithm_than_the_key_fails() -> None:
    key = signing("ES256")
    _, payload, signature = id_token(key).split(".")
    other = {"alg": "RS256", "kid": key.kid}
    header = base64.urlsafe_b64encode(json.dumps(other).encode()).rstrip(b"=").decode()
    jwks = {"keys": [json.loads(key.stored.public_jwk)]}
    assert verify_id_token(f"{header}.{payload}.{signature}", jwks, ISSUER) is None
    assert verify_id_token(id_token(key), jwks, ISSUER) is not None
    assert verify_id_token(id_token(key), {"keys": "nope"}, ISSUER) is None


def typed(key: SigningKey, typ: str | None, **claims: Any) -> str:
    """An ID token of `key` whose header's `typ` is `typ` (None: no `typ` at all)."""
    payload = {"iss": ISSUER, "sub": "alice", "aud": "cl_1", "exp": 100, "iat": 40} | claims
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid}
    if typ is not None:
        header["typ"] = typ
    body = json.dumps(payload).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry(key.alg))


def test_a_logout_token_of_ours_is_no_hint() -> None:
    """Back-Channel Logout §2.4: the logout tokens Baton sends relying parties are signed by the
    same keys, for the same `iss`, `sub` and `aud`; one shown back as an `id_token_hint` would
    otherwise pass for an ID token (and end a session at /logout without a prompt)."""
    key = signing("ES256")
    logout_token = sign_logout_token(ISSUER, key, "cl_1", "alice", {"jti": "j1", "sid": "s1"}, 40)
    assert read_id_token_hint(app_with(key), logout_token) is None
    # Either mark alone is enough: the type, or the `events` claim.
    assert read_id_token_hint(app_with(key), typed(key, "logout+jwt")) is None
    events: dict[str, dict[str, Any]] = {"http://schemas.openid.net/event/backchannel-logout": {}}
    assert read_id_token_hint(app_with(key), typed(key, "JWT", events=events)) is None


@pytest.mark.parametrize("typ", ["at+jwt", "logout+jwt", "secevent+jwt", "", "JOSE"])
def test_a_token_of_another_type_is_no_hint(typ: str) -> None:
    key = signing("ES256")
    assert read_id_token_hint(app_with(key), typed(key, typ)) is None


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "application/jwt"])
def test_an_id_token_is_typed_jwt_or_not_at_all(typ: str | None) -> None:
    key = signing("ES256")
    assert read_id_token_hint(app_with(key), typed(key, typ)) is not None


@pytest.mark.parametrize("iat", [None, "40", True, [40]])
def test_an_id_token_without_a_numeric_iat_is_no_hint(iat: Any) -> None:
    """OIDC Core §2: `iat` is REQUIRED in an ID token."""
    key = signing("ES256")
    assert read_id_token_hint(app_with(key), id_token(key, iat=iat)) is None


def test_a_header_nested_past_the_parsers_depth_is_no_hint_not_a_500() -> None:
    """Review finding: the header is read before any signature; JSON nested thousands deep raised
    RecursionError out of the hint reader (a 500 at /session/end and /authorize)."""
    deep = base64.urlsafe_b64encode(b'{"a":' + b"[" * 6000).rstrip(b"=").decode()
    assert read_id_token_hint(app_with(signing("ES256")), f"{deep}.e30.sig") is None
    shallow = base64.urlsafe_b64encode(b'{"a":' + b"[" * 2000).rstrip(b"=").decode()
    assert read_id_token_hint(app_with(signing("ES256")), f"{shallow}.e30.sig") is None
