"""ID tokens through the token endpoint (OIDC Core §3.1.3, §12.2), over HTTP: the code's
redemption, refreshes and their replay, offline_access, pairwise subjects, each algorithm, and
keys rotated out while ID tokens they signed still live.

The codes are saved through the store with their OpenID Connect facts (nonce, sid, sign-in), as
the authorization endpoint saves them."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from click.testing import CliRunner
from joserfc import jws
from joserfc.jwk import import_key
from sqlalchemy import select
from starlette.testclient import TestClient

from baton.cli import main
from baton.core.clock import FakeClock, SystemClock
from baton.core.facts import SignIn
from baton.core.jwa import registry
from baton.core.keys import StoredKey
from baton.core.subject import pairwise_salt, subject_for
from baton.core.tokens import TokenKind, mint, random_id
from baton.server.runtime.keyring import ID_TOKEN, ID_TOKEN_ALGORITHMS, missing_id_token_keys
from baton.store.base import Client, NewCode
from baton.store.schema import sessions
from baton.store.sql import SQLStore
from tests.support import (
    ISSUER,
    REDIRECT_URI,
    RegisteredClient,
    first_pair,
    hidden_fields,
    introspect,
    pkce_pair,
    refresh,
    register_client,
    register_user,
    running_app,
    sign_in,
)

KEK = "correct horse battery staple, 32+ chars"
OIDC_SCOPE = "openid profile email offline_access read"
AUTH_TIME_AGO = 42
NONCE = "n-0S6_WzA2Mj"

Server = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture
def oidc(database: Path | str) -> Iterator[Server]:
    """An app with OpenID Connect on (a key-encryption key), opaque access tokens."""
    with running_app(database, key_encryption_key=KEK) as running:
        register_user(running[1])
        yield running


@pytest.fixture
def oidc_sqlite(tmp_path: Path) -> Iterator[Server]:
    with running_app(tmp_path, key_encryption_key=KEK) as running:
        register_user(running[1])
        yield running


@dataclass
class Rp:
    registered: RegisteredClient
    client: Client

    @property
    def id(self) -> str:
        return self.client.id


def register_rp(
    store: SQLStore,
    *,
    alg: str = "RS256",
    subject_type: str = "public",
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    sector_identifier_uri: str | None = None,
) -> Rp:
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name="relying party",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=redirect_uris,
        scope=OIDC_SCOPE,
        created_at=0,
        id_token_signed_response_alg=alg,
        subject_type=subject_type,
        sector_identifier_uri=sector_identifier_uri,
    )
    anyio.run(store.create_client, client)
    return Rp(RegisteredClient(client.id, secret.plaintext), client)


def redeem(
    server: Server,
    rp: Rp,
    scope: str = OIDC_SCOPE,
    nonce: str | None = NONCE,
    sid: str | None = "sid_browser_1",
) -> httpx2.Response:
    """Saves a code as the authorization endpoint would after alice signed in, and redeems it."""
    http, store, clock = server
    user = anyio.run(store.get_user, "alice")
    assert user is not None
    code = mint(TokenKind.CODE)
    verifier, challenge = pkce_pair()
    sign_in = SignIn(
        auth_time=clock.now() - AUTH_TIME_AGO,
        amr=("pwd",),
        claims={"email": "alice@example.com"},
    )
    new = NewCode(
        digest=code.digest,
        client_id=rp.id,
        user_id=user.id,
        redirect_uri=REDIRECT_URI,
        scope=scope,
        code_challenge=challenge,
        created_at=clock.now(),
        expires_at=clock.now() + 60,
        nonce=nonce,
        sid=sid,
        sign_in=sign_in,
    )
    anyio.run(store.save_code, new)
    data = {
        "grant_type": "authorization_code",
        "code": code.plaintext,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    response = http.post("/token", data=data, auth=rp.registered.basic)
    response.code = code.plaintext  # type: ignore[attr-defined]
    return response


def segment(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def verified(http: TestClient, token: str) -> dict[str, Any]:
    """The claims of an ID token whose signature a key of the served JWKS checks."""
    head = segment(token.split(".")[0])
    keys = {k["kid"]: k for k in http.get("/jwks.json").json()["keys"]}
    key = import_key(keys[head["kid"]])
    found = jws.deserialize_compact(token, key, registry=registry(head["alg"]))
    claims: dict[str, Any] = json.loads(found.payload)
    return claims


def authlib_validated(
    http: TestClient, token: str, client_id: str, access_token: str, nonce: str | None, now: int
) -> dict[str, Any]:
    """The claims as Authlib's relying party checks them (CodeIDToken: iss, aud, exp, iat,
    nonce, azp, at_hash), the signature by authlib.jose against the served JWKS."""
    # authlib.jose warns, once, that it is deprecated (for joserfc), under a filter of its own.
    with warnings.catch_warnings(record=True):
        from authlib.jose import JsonWebKey, jwt
        from authlib.oidc.core import CodeIDToken

    key_set = JsonWebKey.import_key_set(http.get("/jwks.json").json())
    params: dict[str, Any] = {"client_id": client_id, "access_token": access_token}
    if nonce is not None:
        params["nonce"] = nonce
    claims = jwt.decode(
        token,
        key_set,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"values": [ISSUER]}},
        claims_params=params,
    )
    claims.validate(now=now)
    return dict(claims)


# -- the code's redemption -----------------------------------------------------------------------


def test_code_flow_returns_an_id_token_that_verifies_against_the_jwks(oidc: Server) -> None:
    http, store, clock = oidc
    rp = register_rp(store)
    response = redeem(oidc, rp)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["refresh_token"].startswith("bat_rt_")  # openid + offline_access
    token = body["id_token"]
    assert segment(token.split(".")[0])["typ"] == "JWT"
    claims = verified(http, token)
    assert claims == authlib_validated(http, token, rp.id, body["access_token"], NONCE, clock.now())
    assert claims["iss"] == ISSUER
    assert claims["aud"] == rp.id and "azp" not in claims
    assert claims["sub"] == "alice"
    assert claims["nonce"] == NONCE
    assert claims["iat"] == clock.now()
    assert claims["exp"] == clock.now() + 3600  # --id-token-lifetime's default
    assert claims["auth_time"] == clock.now() - AUTH_TIME_AGO
    assert claims["sid"] == "sid_browser_1"
    assert claims["amr"] == ["pwd"]
    assert claims["email"] == "alice@example.com"


def test_a_request_without_nonce_gets_an_id_token_without_one(oidc_sqlite: Server) -> None:
    http, store, _clock = oidc_sqlite
    body = redeem(oidc_sqlite, register_rp(store), nonce=None, sid=None).json()
    claims = verified(http, body["id_token"])
    assert "nonce" not in claims and "sid" not in claims


def test_id_token_lifetime_is_the_option(tmp_path: Path) -> None:
    with running_app(tmp_path, key_encryption_key=KEK, id_token_lifetime=300) as server:
        http, store, clock = server
        register_user(store)
        claims = verified(http, redeem(server, register_rp(store)).json()["id_token"])
        assert claims["exp"] == clock.now() + 300


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
def test_each_id_token_algorithm(oidc_sqlite: Server, alg: str) -> None:
    """The keys of every ID token algorithm exist from the start: a client registered for ES256
    or Ed25519 gets its ID tokens so, at_hash hashed as its alg says (SHA-512 for Ed25519)."""
    http, store, clock = oidc_sqlite
    rp = register_rp(store, alg=alg)
    body = redeem(oidc_sqlite, rp).json()
    token = body["id_token"]
    assert segment(token.split(".")[0])["alg"] == alg
    claims = verified(http, token)
    if alg == "ES256":
        assert claims == authlib_validated(
            http, token, rp.id, body["access_token"], NONCE, clock.now()
        )
    else:
        # Authlib knows Ed25519 by its old name, EdDSA, alone: its hash agrees with ours.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from authlib.oidc.core.util import create_half_hash
        expected = create_half_hash(body["access_token"], "EdDSA").decode()
        assert claims["at_hash"] == expected and len(expected) == 43


# -- refresh and replay (§12.2) ------------------------------------------------------------------


def test_refresh_returns_a_new_id_token_of_the_same_sign_in(oidc: Server) -> None:
    http, store, clock = oidc
    rp = register_rp(store)
    first = redeem(oidc, rp).json()
    before = verified(http, first["id_token"])
    clock.advance(120)
    response = refresh(http, rp.registered, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    after = authlib_validated(
        http, second["id_token"], rp.id, second["access_token"], None, clock.now()
    )
    for name in ("iss", "sub", "aud", "auth_time", "sid"):
        assert after[name] == before[name]
    assert "nonce" not in after  # §12.2
    assert after["iat"] == clock.now() == before["iat"] + 120
    assert second["id_token"] != first["id_token"]

    # A retry inside the leeway (the response was lost): the very same pair, ID token included.
    clock.advance(5)
    again = refresh(http, rp.registered, first["refresh_token"]).json()
    assert again["id_token"] == second["id_token"]
    assert again["access_token"] == second["access_token"]
    assert again["refresh_token"] == second["refresh_token"]


def test_openid_without_offline_access_gets_no_refresh_token(oidc: Server) -> None:
    """OIDC Core §11; the lone access token still dies with its grant (the code presented
    twice revokes the grant, RFC 6749 §4.1.2)."""
    http, store, _clock = oidc
    rp = register_rp(store)
    rs = register_client(store, resource_server=True)
    response = redeem(oidc, rp, scope="openid profile read")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body and "refresh_token_expires_in" not in body
    assert body["scope"] == "openid profile read"
    assert verified(http, body["id_token"])["aud"] == rp.id
    assert introspect(http, rs, body["access_token"])["active"] is True
    replayed = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": response.code,  # type: ignore[attr-defined]
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "x" * 43,
        },
        auth=rp.registered.basic,
    )
    assert replayed.status_code == 400
    assert introspect(http, rs, body["access_token"])["active"] is False


def test_plain_oauth_is_unchanged_with_oidc_on(oidc_sqlite: Server) -> None:
    http, store, _clock = oidc_sqlite
    client = register_client(store)
    pair = first_pair(http, client)
    assert "id_token" not in pair
    child = refresh(http, client, pair["refresh_token"]).json()
    assert "id_token" not in child and child["refresh_token"].startswith("bat_rt_")


def test_an_issuer_with_a_trailing_slash_gives_the_iss_discovery_announces(
    tmp_path: Path,
) -> None:
    """OIDC Discovery §4.3: the metadata's `issuer` "MUST be identical to the iss Claim value in
    ID Tokens issued from this Issuer"; a relying party compares them as strings."""
    with running_app(tmp_path, key_encryption_key=KEK, issuer=ISSUER + "/") as server:
        http, store, _clock = server
        register_user(store)
        discovered = http.get("/.well-known/openid-configuration").json()["issuer"]
        assert discovered == ISSUER
        claims = verified(http, redeem(server, register_rp(store)).json()["id_token"])
        assert claims["iss"] == discovered


def test_without_a_key_encryption_key_no_id_token_is_issued(tmp_path: Path) -> None:
    """OpenID Connect off: the token endpoint issues no ID token (the authorization endpoint
    refuses `openid` before any code is made)."""
    with running_app(tmp_path) as server:
        _http, store, _clock = server
        register_user(store)
        body = redeem(server, register_rp(store)).json()
        assert "id_token" not in body and "refresh_token" in body


SECTOR_URI = "https://rp.example/sector.json"


def test_pairwise_client_gets_its_pairwise_subject(oidc_sqlite: Server) -> None:
    http, store, _clock = oidc_sqlite
    # A loopback redirect URI is no sector (RFC 8252 §7.3): the client names its own.
    pairwise = register_rp(store, subject_type="pairwise", sector_identifier_uri=SECTOR_URI)
    public = register_rp(store)
    claims = verified(http, redeem(oidc_sqlite, pairwise).json()["id_token"])
    expected = subject_for("alice", "pairwise", (REDIRECT_URI,), SECTOR_URI, pairwise_salt(KEK))
    assert claims["sub"] == expected != "alice"
    assert verified(http, redeem(oidc_sqlite, public).json()["id_token"])["sub"] == "alice"


def test_a_pairwise_client_with_no_sector_is_refused_and_its_code_kept(
    oidc_sqlite: Server,
) -> None:
    """A registration the ID token cannot follow: unauthorized_client, no 500, nothing issued."""
    _http, store, _clock = oidc_sqlite
    rp = register_rp(
        store,
        subject_type="pairwise",
        redirect_uris=(REDIRECT_URI, "https://elsewhere.example/cb"),
    )
    response = redeem(oidc_sqlite, rp)
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert anyio.run(store.list_grants, rp.id, None) == []


def test_a_missing_key_is_a_503_and_the_code_stays_good(oidc_sqlite: Server) -> None:
    http, store, _clock = oidc_sqlite
    rp = register_rp(store)
    keys = http.app.state.baton.keys  # type: ignore[attr-defined]
    signing, keys._signing = keys._signing, []  # as if no key had been loaded yet
    try:
        response = redeem(oidc_sqlite, rp)
    finally:
        keys._signing = signing
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "30"
    assert anyio.run(store.list_grants, rp.id, None) == []


# -- keys ----------------------------------------------------------------------------------------


def test_every_id_token_algorithm_has_a_key_at_start(oidc_sqlite: Server) -> None:
    _http, store, _clock = oidc_sqlite
    stored = anyio.run(store.signing_keys)
    assert sorted(k.alg for k in stored) == sorted(ID_TOKEN_ALGORITHMS)
    assert {k.purpose for k in stored} == {ID_TOKEN}  # opaque access tokens: none signs them


def test_jwt_access_tokens_keep_their_key(tmp_path: Path) -> None:
    """The ID-token-only keys never sign access tokens; the access-token key serves ID tokens
    of its algorithm."""
    with running_app(
        tmp_path, key_encryption_key=KEK, access_token_format="jwt", signing_alg="ES256"
    ) as server:
        _http, store, _clock = server
        register_user(store)
        stored = anyio.run(store.signing_keys)
        (access_key,) = [k for k in stored if k.purpose is None]
        assert sorted(k.alg for k in stored if k.purpose == ID_TOKEN) == ["Ed25519", "RS256"]
        body = redeem(server, register_rp(store, alg="ES256")).json()
        assert segment(body["access_token"].split(".")[0])["kid"] == access_key.kid
        assert segment(body["id_token"].split(".")[0])["kid"] == access_key.kid


def key(alg: str, activates_at: int, retires_at: int | None, purpose: str | None) -> StoredKey:
    return StoredKey(random_id("key_"), alg, "{}", b"", 0, activates_at, retires_at, purpose)


def test_missing_id_token_keys() -> None:
    now, life = 100_000, 3600

    def missing(keys: list[StoredKey], algs: tuple[str, ...]) -> list[tuple[str, int]]:
        return missing_id_token_keys(keys, algs, now, life)

    lasting = [key("RS256", 0, None, None), key("ES256", 0, None, ID_TOKEN)]
    assert missing(lasting, ("RS256", "ES256")) == []
    # No key at all: one that signs at once.
    assert missing([], ("RS256",)) == [("RS256", now)]
    # A retiring key still signs: the next one is published ahead, and signs an ID token's
    # lifetime before the old one leaves the JWKS (so every token it signed still verifies).
    assert missing([key("RS256", 0, now + 9000, None)], ("RS256",)) == [("RS256", now + 600)]
    assert missing([key("RS256", 0, now + life + 100, None)], ("RS256",)) == [("RS256", now + 100)]
    # Leaving sooner than a token lives: the next one signs at once.
    assert missing([key("RS256", 0, now + 100, None)], ("RS256",)) == [("RS256", now)]
    # A retired key counts for nothing.
    assert missing([key("RS256", 0, now, None)], ("RS256",)) == [("RS256", now)]
    # A legacy EdDSA key serves no Ed25519 client (its tokens would say EdDSA); the key that
    # signs at once is dated before the access token key, which a 0.1.0 server beside this one
    # (it signs with the newest active key of all) keeps signing with.
    assert missing([key("EdDSA", now - 50, None, None)], ("Ed25519",)) == [("Ed25519", now - 51)]
    access = key("ES256", now - 50, None, None)
    assert missing([access, key("ES256", now, now + 10, None)], ("RS256",)) == [("RS256", now - 1)]
    assert missing([access, key("ES256", now + 10, None, None)], ("RS256",)) == [
        ("RS256", now - 51)
    ]


def test_an_id_token_is_never_signed_by_a_key_that_leaves_before_it_expires() -> None:
    """OIDC Core §10.1.1: a key retiring within an ID token's lifetime hands over to the next one
    (regression: the old key signed until its last second, and its tokens outlived it)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from baton.core.keys import SigningKey
    from baton.server.runtime.keyring import KeyRing

    now, life = 100_000, 3600
    old = key("RS256", 0, now + 1000, None)
    new = key("RS256", now + 1000 - life, None, ID_TOKEN)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ring = KeyRing(None, None, life)  # type: ignore[arg-type]
    ring._signing = [SigningKey(old, private), SigningKey(new, private)]
    assert ring.key_for("RS256", now).kid == new.kid  # type: ignore[union-attr]
    # Before the next one signs, the old one still does (better than none at all).
    assert ring.key_for("RS256", now - life).kid == old.kid  # type: ignore[union-attr]


def rotate(db: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        ["keys", "rotate", "--db", db, *args, "--json"],
        env={"BATON_KEY_ENCRYPTION_KEY": KEK},
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_an_id_token_signed_by_a_rotated_key_verifies_until_it_expires(tmp_path: Path) -> None:
    """`baton keys rotate --alg RS256 --id-token-only` publishes the next RS256 key ahead; the
    old one stays in the JWKS until every ID token it signed has expired; the keys of the other
    algorithms are left alone."""
    clock = FakeClock(SystemClock().now())  # the CLI's clock is the system's
    with running_app(tmp_path, clock=clock, key_encryption_key=KEK) as server:
        http, store, _clock = server
        register_user(store)
        rp = register_rp(store)
        old_token = redeem(server, rp).json()["id_token"]
        old_kid = segment(old_token.split(".")[0])["kid"]
        expires = verified(http, old_token)["exp"]
        others = {k.kid for k in anyio.run(store.signing_keys) if k.alg != "RS256"}

        rotated = rotate(str(tmp_path / "baton.db"), "--alg", "RS256", "--id-token-only")
        assert rotated["purpose"] == ID_TOKEN
        assert rotated["old_keys_retire_at"] - rotated["activates_at"] >= 3600
        keys = http.app.state.baton.keys  # type: ignore[attr-defined]
        anyio.run(keys.reload, clock.now())  # as every process does each 30 s
        assert {k.kid for k in anyio.run(store.signing_keys) if k.retires_at is None} == {
            rotated["kid"],
            *others,
        }
        clock.advance(rotated["activates_at"] - clock.now())
        new_token = redeem(server, rp).json()["id_token"]
        assert segment(new_token.split(".")[0])["kid"] == rotated["kid"]

        clock.advance(expires - 1 - clock.now())  # the old ID token's last second
        assert verified(http, old_token)["sub"] == "alice"
        assert old_kid in {k["kid"] for k in http.get("/jwks.json").json()["keys"]}
        clock.advance(rotated["old_keys_retire_at"] - clock.now())
        assert old_kid not in {k["kid"] for k in http.get("/jwks.json").json()["keys"]}
        assert verified(http, new_token)["sub"] == "alice"


def test_rotate_keeps_old_keys_for_the_configured_id_token_lifetime(tmp_path: Path) -> None:
    """The retirement follows BATON_ID_TOKEN_LIFETIME when it is longer than --max-access-ttl."""
    db = str(tmp_path / "baton.db")
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", db]).exit_code == 0
    rotate(db)
    result = CliRunner().invoke(
        main,
        ["keys", "rotate", "--db", db, "--max-access-ttl", "600", "--json"],
        env={"BATON_KEY_ENCRYPTION_KEY": KEK, "BATON_ID_TOKEN_LIFETIME": "7200"},
    )
    assert result.exit_code == 0, result.stderr
    second = json.loads(result.stdout)
    assert second["old_keys_retire_at"] == second["activates_at"] + 7200


def test_an_access_token_key_replaces_the_id_token_key_of_its_alg_only(tmp_path: Path) -> None:
    """Switching to JWT access tokens later: the first access-token key (`keys rotate`) takes
    over the ES256 ID tokens from the ES256 ID-token key, which retires; the RS256 and Ed25519
    ID-token keys stay, so their clients' ID tokens keep their keys."""
    with running_app(tmp_path, key_encryption_key=KEK) as server:
        _http, store, _clock = server
        before = {k.alg: k for k in anyio.run(store.signing_keys)}
        rotated = rotate(str(tmp_path / "baton.db"), "--alg", "ES256")
        assert rotated["purpose"] is None
        after = {k.kid: k for k in anyio.run(store.signing_keys)}
        assert after[before["ES256"].kid].retires_at == rotated["old_keys_retire_at"]
        assert after[before["RS256"].kid].retires_at is None
        assert after[before["Ed25519"].kid].retires_at is None


def test_the_first_access_token_key_signs_at_once_beside_id_token_keys(tmp_path: Path) -> None:
    """OpenID Connect made ID-token keys; the first key for JWT access tokens must still sign at
    once (a server switched to JWTs has no other), while replacing the ID-token key of its alg."""
    with running_app(tmp_path, key_encryption_key=KEK) as (_http, store, _clock):
        rs256 = next(k for k in anyio.run(store.signing_keys) if k.alg == "RS256")
        first = rotate(str(tmp_path / "baton.db"), "--alg", "RS256")
        new = {k.kid: k for k in anyio.run(store.signing_keys)}[first["kid"]]
        assert new.purpose is None and new.activates_at == new.created_at
        retired = {k.kid: k for k in anyio.run(store.signing_keys)}[rs256.kid]
        assert retired.retires_at == first["old_keys_retire_at"] >= new.activates_at + 3600


# -- the whole flow, through the authorization endpoint ------------------------------------------


def test_the_browser_flow_gives_an_id_token_of_that_sign_in(oidc_sqlite: Server) -> None:
    """/authorize (sign-in, consent to offline_access), then /token: the ID token repeats the
    request's nonce and the browser session's sid, and its auth_time is the sign-in's."""
    http, store, clock = oidc_sqlite
    rp = register_rp(store)
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": rp.id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid offline_access email",
        "state": "st8",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": NONCE,
        "prompt": "consent",
    }
    signed_in_at = clock.now()
    login = http.get("/authorize", params=params)
    assert login.status_code == 303, login.text
    signed = sign_in(http, login.headers["location"])
    clock.advance(3)
    page = http.get(signed.headers["location"])
    assert page.status_code == 200 and 'value="allow"' in page.text, page.text
    back = http.post("/authorize", data={**hidden_fields(page.text), "decision": "allow"})
    assert back.status_code in (302, 303), back.text
    query = parse_qs(urlsplit(back.headers["location"]).query)
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    response = http.post("/token", data=data, auth=rp.registered.basic)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["refresh_token"].startswith("bat_rt_")  # offline_access, consented to
    claims = authlib_validated(
        http, body["id_token"], rp.id, body["access_token"], NONCE, clock.now()
    )
    sids = anyio.run(
        store.inspect,
        lambda conn: [row.sid for row in conn.execute(select(sessions.c.sid))],
    )
    assert claims["sid"] in sids
    assert claims["auth_time"] == signed_in_at
    assert claims["sub"] == "alice"
