"""The UserInfo endpoint (OpenID Connect Core §5.3) through real HTTP: the bearer token in the
header or a POST body (never the query), RFC 6750 §3 challenges for every refusal, the token
alive exactly while introspection says it is, and the claims its scope and `claims` request
release, under the `sub` the client sees (public or pairwise)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import Connection, update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.facts import SignIn
from baton.core.subject import pairwise_salt, subject_for
from baton.core.tokens import TokenKind, mint, random_id
from baton.store.base import Client, NewCode
from baton.store.schema import clients, grants, users
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    introspect,
    pkce_pair,
    refresh,
    register_client,
    register_user,
    running_app,
)

KEK = "correct horse battery staple, 32+ chars"
OIDC_SCOPE = "openid profile email offline_access"
PROFILE = {"name": "Alice Liddell", "given_name": "Alice", "locale": "en-GB"}
BARE_CHALLENGE = 'Bearer realm="baton"'

App = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with running_app(tmp_path, key_encryption_key=KEK) as running:
        http, store, clock = running
        register_user(store)
        set_user(store, "alice", email="alice@example.com", profile=PROFILE, updated_at=1234)
        yield http, store, clock


def set_user(store: SQLStore, username: str, **values: Any) -> None:
    """The user's OpenID claims, as `baton users set` will write them."""
    if "profile" in values:
        values["profile"] = json.dumps(values["profile"])
    values.setdefault("email_verified", True)

    def work(conn: Connection) -> None:
        conn.execute(update(users).where(users.c.username == username).values(**values))

    anyio.run(store.runner.write, work)


def oidc_client(store: SQLStore, scope: str = OIDC_SCOPE) -> RegisteredClient:
    return register_client(store, scope=scope)


def tokens(
    app: App, client: RegisteredClient, scope: str = OIDC_SCOPE, sign_in: SignIn | None = None
) -> dict[str, Any]:
    """A token response for a code the authorization endpoint would have issued to an OpenID
    Connect request of `scope`, signed in as alice: saved through the store, redeemed at /token."""
    http, store, clock = app
    user = anyio.run(store.get_user, "alice")
    assert user is not None
    now = clock.now()
    sign_in = sign_in or SignIn(auth_time=now, amr=("pwd",))
    verifier, challenge = pkce_pair()
    code = mint(TokenKind.CODE)
    saved = NewCode(
        digest=code.digest,
        client_id=client.id,
        user_id=user.id,
        redirect_uri=REDIRECT_URI,
        scope=scope,
        code_challenge=challenge,
        created_at=now,
        expires_at=now + 60,
        nonce="n-0S6_WzA2Mj",
        sid="sid-1",
        sign_in=sign_in,
    )
    anyio.run(store.save_code, saved)
    response = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code.plaintext,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            **client.auth_params(),
        },
    )
    assert response.status_code == 200, response.text
    # The grant holds the code's sign-in (the ID-token part copies it at redemption; written
    # here too, so these tests do not depend on that part).
    stored = sign_in.stored()

    def work(conn: Connection) -> None:
        conn.execute(
            update(grants)
            .where(grants.c.client_id == client.id, grants.c.sign_in.is_(None))
            .values(sign_in=stored, sid="sid-1")
        )

    anyio.run(store.runner.write, work)
    body: dict[str, Any] = response.json()
    return body


def userinfo(http: TestClient, token: str) -> httpx2.Response:
    return http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})


def refused(response: httpx2.Response, status: int, error: str | None) -> str:
    """Asserts an RFC 6750 §3 refusal; returns its challenge."""
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(BARE_CHALLENGE)
    body = response.json()
    if error is None:
        assert challenge == BARE_CHALLENGE  # §3.1: no error code without a token
        assert "error" not in body
    else:
        assert f'error="{error}"' in challenge
        assert body["error"] == error
    assert body["error_description"]
    return challenge


# -- where the token comes from ------------------------------------------------------------------


def test_get_with_the_header_answers_the_users_claims(app: App) -> None:
    http, _store, _clock = app
    client = oidc_client(app[1])
    access = tokens(app, client)["access_token"]
    response = userinfo(http, access)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "sub": "alice",
        "preferred_username": "alice",
        "updated_at": 1234,
        "email": "alice@example.com",
        "email_verified": True,
        **PROFILE,
    }


def test_post_takes_the_token_in_the_form_body_or_the_header(app: App) -> None:
    http, store, _clock = app
    access = tokens(app, oidc_client(store))["access_token"]
    by_body = http.post("/userinfo", data={"access_token": access})
    assert by_body.status_code == 200, by_body.text
    assert by_body.json()["sub"] == "alice"
    by_header = http.post("/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert by_header.status_code == 200, by_header.text
    assert by_header.json() == by_body.json()


def test_a_token_in_the_query_is_no_token(app: App) -> None:
    """RFC 6750 §2.3 is not offered (RFC 9700 §2.4: tokens leak from URLs)."""
    http, store, _clock = app
    access = tokens(app, oidc_client(store))["access_token"]
    refused(http.get("/userinfo", params={"access_token": access}), 401, None)
    refused(http.post("/userinfo", params={"access_token": access}), 401, None)


def test_no_token_or_another_scheme_gets_a_bare_challenge(app: App) -> None:
    http, _store, _clock = app
    refused(http.get("/userinfo"), 401, None)
    refused(http.post("/userinfo"), 401, None)
    refused(http.get("/userinfo", auth=("client", "secret")), 401, None)


def test_the_token_sent_twice_or_malformed_is_an_invalid_request(app: App) -> None:
    http, store, _clock = app
    access = tokens(app, oidc_client(store))["access_token"]
    twice = http.post(
        "/userinfo",
        headers={"Authorization": f"Bearer {access}"},
        data={"access_token": access},
    )
    refused(twice, 400, "invalid_request")
    refused(http.get("/userinfo", headers={"Authorization": "Bearer a b"}), 400, "invalid_request")
    refused(http.get("/userinfo", headers={"Authorization": "Bearer"}), 400, "invalid_request")


# -- a dead token is refused as introspection would call it inactive ------------------------------


def test_an_unknown_token_or_a_refresh_token_is_invalid(app: App) -> None:
    http, store, _clock = app
    issued = tokens(app, oidc_client(store))
    refused(userinfo(http, mint(TokenKind.ACCESS).plaintext), 401, "invalid_token")
    refused(userinfo(http, issued["refresh_token"]), 401, "invalid_token")
    refused(userinfo(http, "not-a-token"), 401, "invalid_token")


def test_an_expired_token_is_invalid(app: App) -> None:
    http, store, clock = app
    access = tokens(app, oidc_client(store))["access_token"]
    clock.advance(3600)
    refused(userinfo(http, access), 401, "invalid_token")


def test_a_revoked_token_is_invalid(app: App) -> None:
    http, store, _clock = app
    client = oidc_client(store)
    access = tokens(app, client)["access_token"]
    assert http.post("/revoke", data={"token": access}, auth=client.basic).status_code == 200
    refused(userinfo(http, access), 401, "invalid_token")


def test_an_access_token_dies_with_its_companion_refresh_token(app: App) -> None:
    """Rotated: the old access token lives to the end of the leeway, as introspection says."""
    http, store, clock = app
    client = oidc_client(store)
    first = tokens(app, client)
    rotated = refresh(http, client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert userinfo(http, first["access_token"]).status_code == 200  # inside the leeway
    clock.advance(600)
    assert introspect(http, client, first["access_token"]) == {"active": False}
    refused(userinfo(http, first["access_token"]), 401, "invalid_token")
    assert userinfo(http, rotated.json()["access_token"]).status_code == 200


def test_revoking_the_refresh_token_kills_the_access_token(app: App) -> None:
    http, store, _clock = app
    client = oidc_client(store)
    issued = tokens(app, client)
    revoked = http.post("/revoke", data={"token": issued["refresh_token"]}, auth=client.basic)
    assert revoked.status_code == 200
    refused(userinfo(http, issued["access_token"]), 401, "invalid_token")


# -- scope ---------------------------------------------------------------------------------------


def test_a_token_without_openid_is_insufficient_scope(app: App) -> None:
    http, store, _clock = app
    client = oidc_client(store)
    access = tokens(app, client, scope="profile email")["access_token"]
    challenge = refused(userinfo(http, access), 403, "insufficient_scope")
    assert 'scope="openid"' in challenge


def test_a_client_credentials_token_is_about_no_user(app: App) -> None:
    """403, not invalid_token: the token is alive, and a client refreshing it would get another
    one just as useless."""
    http, store, _clock = app
    client = oidc_client(store, scope="openid read")
    issued = http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "openid"}, auth=client.basic
    )
    assert issued.status_code == 200, issued.text
    refused(userinfo(http, issued.json()["access_token"]), 403, "insufficient_scope")


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", set()),
        ("openid email", {"email", "email_verified"}),
        ("openid profile", {"name", "given_name", "locale", "preferred_username", "updated_at"}),
    ],
)
def test_the_scope_releases_its_claims(app: App, scope: str, claims: set[str]) -> None:
    http, store, _clock = app
    access = tokens(app, oidc_client(store), scope=scope)["access_token"]
    response = userinfo(http, access)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"sub"} | claims


def test_a_refresh_with_a_narrower_scope_narrows_the_claims(app: App) -> None:
    http, store, _clock = app
    client = oidc_client(store)
    issued = tokens(app, client)
    narrowed = refresh(http, client, issued["refresh_token"], scope="openid email")
    assert narrowed.status_code == 200, narrowed.text
    answer = userinfo(http, narrowed.json()["access_token"]).json()
    assert set(answer) == {"sub", "email", "email_verified"}


def test_claims_asked_by_name_for_userinfo_are_released(app: App) -> None:
    """Core §5.5: `claims={"userinfo": {"email": null}}` with the `openid` scope alone."""
    http, store, clock = app
    sign_in = SignIn(auth_time=clock.now(), userinfo=("email", "nickname"))
    access = tokens(app, oidc_client(store), scope="openid", sign_in=sign_in)["access_token"]
    answer = userinfo(http, access).json()
    # Only what was asked (not the rest of the email scope); nickname is not set: left out
    # (§5.3.2), not null.
    assert answer == {"sub": "alice", "email": "alice@example.com"}


SECTOR_URI = "https://rp.example/sector.json"


def test_a_pairwise_client_sees_its_pairwise_subject(app: App) -> None:
    """Core §8.1: the same `sub` the ID token carries, computed by the same rule."""
    http, store, _clock = app
    secret = mint(TokenKind.CLIENT_SECRET)
    pairwise = Client(
        id=random_id("cl_"),
        name="pairwise",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope=OIDC_SCOPE,
        created_at=0,
        subject_type="pairwise",
        sector_identifier_uri=SECTOR_URI,  # a loopback redirect URI is no sector
    )
    anyio.run(store.create_client, pairwise)
    client = RegisteredClient(pairwise.id, secret.plaintext)
    sub = userinfo(http, tokens(app, client)["access_token"]).json()["sub"]
    assert sub == subject_for("alice", "pairwise", (REDIRECT_URI,), SECTOR_URI, pairwise_salt(KEK))
    assert sub != "alice"
    # Another sector sees another subject.
    elsewhere = ("https://other.example/cb",)
    other = subject_for("alice", "pairwise", elsewhere, None, pairwise_salt(KEK))
    assert other != sub


def test_a_pairwise_client_whose_sector_became_unknown_is_refused_not_a_500(app: App) -> None:
    """A pairwise client row whose sector cannot be told any more (its sector_identifier_uri
    dropped behind the registration checks; its redirect URI is loopback, no sector): its
    tokens get RFC 6750 §3.1 invalid_token, never a 500."""
    http, store, _clock = app
    secret = mint(TokenKind.CLIENT_SECRET)
    pairwise = Client(
        id=random_id("cl_"),
        name="pairwise",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope=OIDC_SCOPE,
        created_at=0,
        subject_type="pairwise",
        sector_identifier_uri=SECTOR_URI,
    )
    anyio.run(store.create_client, pairwise)
    access = tokens(app, RegisteredClient(pairwise.id, secret.plaintext))["access_token"]
    assert userinfo(http, access).status_code == 200

    def drop_sector(conn: Connection) -> None:
        conn.execute(
            update(clients).where(clients.c.id == pairwise.id).values(sector_identifier_uri=None)
        )

    anyio.run(store.runner.write, drop_sector)
    challenge = refused(userinfo(http, access), 401, "invalid_token")
    assert "sector_identifier_uri" in userinfo(http, access).json()["error_description"]
    assert 'error="invalid_token"' in challenge


# -- the endpoint itself ------------------------------------------------------------------------


def test_jwt_access_tokens_work_too(tmp_path: Path) -> None:
    with running_app(tmp_path, key_encryption_key=KEK, access_token_format="jwt") as running:
        register_user(running[1])
        access = tokens(running, oidc_client(running[1]))["access_token"]
        assert access.count(".") == 2
        response = userinfo(running[0], access)
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == "alice"


def test_no_userinfo_endpoint_while_openid_connect_is_off(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        for response in (http.get("/userinfo"), http.post("/userinfo")):
            assert response.status_code == 404
            assert response.json()["error"] == "invalid_request"


def test_userinfo_is_rate_limited_per_address(tmp_path: Path) -> None:
    with running_app(tmp_path, key_encryption_key=KEK, rate_limit_address=1.0) as running:
        http = running[0]
        answers = [http.get("/userinfo").status_code for _ in range(4)]
    assert 429 in answers


# -- CORS: a browser app reads its own user's claims, no other app's ---------------------------

SPA = "https://spa.example"
OTHER = "https://other.example"


def test_a_browser_app_reads_userinfo_across_origins(app: App) -> None:
    http, store, _clock = app
    client = register_client(store, scope=OIDC_SCOPE, redirect_uris=(SPA + "/cb",))
    register_client(store, scope=OIDC_SCOPE, redirect_uris=(OTHER + "/cb",))
    access = tokens(app, client)["access_token"]
    preflight = http.request(
        "OPTIONS",
        "/userinfo",
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SPA
    assert set(preflight.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    headers = {"Authorization": f"Bearer {access}", "Origin": SPA}
    for answer in (
        http.get("/userinfo", headers=headers),
        http.post("/userinfo", data={"access_token": access}, headers={"Origin": SPA}),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == SPA
        assert "WWW-Authenticate" in answer.headers["access-control-expose-headers"]
        assert "access-control-allow-credentials" not in answer.headers
    # Another client's origin may call (its own tokens), but cannot read this client's answer.
    other = http.get("/userinfo", headers={**headers, "Origin": OTHER})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    # A refusal before any client is known is readable by a registered origin (its app can
    # then tell a dead token), and by no other.
    dead = http.get("/userinfo", headers={"Authorization": "Bearer nope", "Origin": OTHER})
    assert dead.status_code == 401
    assert dead.headers["access-control-allow-origin"] == OTHER
    stranger = http.get("/userinfo", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
