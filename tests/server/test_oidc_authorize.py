"""OpenID Connect authentication requests at /authorize (Core §3.1.2), through real HTTP: what the
user sees (sign-in, account choice, consent) and what the client gets back (a code whose row
carries the nonce, the session's sid and the sign-in; or an error at its redirect URI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from joserfc import jws
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.facts import LiveSession
from baton.core.jwa import registry
from baton.core.subject import subject_for
from baton.core.tokens import random_id
from baton.server.runtime.context import Baton
from baton.store.base import Client
from baton.store.schema import authorization_codes, sessions, users
from baton.store.sql import SQLStore
from tests.support import (
    ISSUER,
    REDIRECT_URI,
    hidden_fields,
    pkce_pair,
    register_user,
    running_app,
    sign_in,
)

KEK = "k" * 40
OIDC_SCOPE = "openid profile email offline_access read"
Running = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture
def oidc(database: Path | str) -> Iterator[Running]:
    """An app with OpenID Connect on (a key-encryption key, RS256 keys), on both databases."""
    with running_app(
        database, key_encryption_key=KEK, access_token_format="jwt", signing_alg="RS256"
    ) as running:
        register_user(running[1], "alice")
        register_user(running[1], "bob")
        yield running


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Running]:
    """The same, on SQLite alone (for the checks a database cannot change)."""
    with running_app(
        tmp_path, key_encryption_key=KEK, access_token_format="jwt", signing_alg="RS256"
    ) as running:
        register_user(running[1], "alice")
        register_user(running[1], "bob")
        yield running


def new_client(store: SQLStore, **fields: Any) -> Client:
    client = Client(
        id=random_id("cl_"),
        name="Relying Party",
        secret_digest=b"x" * 32,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope=OIDC_SCOPE,
        created_at=0,
        **fields,
    )
    anyio.run(store.create_client, client)
    return client


def request_params(client: Client, **extra: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "st8",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "n-0S6_WzA2Mj",
    } | extra


def at_client(response: httpx2.Response) -> dict[str, str]:
    """The query of a redirect to the client (one value each)."""
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def error_at_client(response: httpx2.Response) -> tuple[str, str]:
    query = at_client(response)
    assert query["state"] == "st8" and query["iss"] == ISSUER, query
    return query["error"], query.get("error_description", "")


def to_login(response: httpx2.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/login?"), location
    return location


def is_consent_page(response: httpx2.Response) -> bool:
    return response.status_code == 200 and 'value="allow"' in response.text


def allow(http: TestClient, page: httpx2.Response, decision: str = "allow") -> httpx2.Response:
    assert is_consent_page(page), page.text
    return http.post("/authorize", data={**hidden_fields(page.text), "decision": decision})


def go(http: TestClient, params: dict[str, str], username: str = "alice") -> httpx2.Response:
    """The request as a browser goes through it: signs in if asked, allows if asked."""
    response = http.get("/authorize", params=params)
    if response.status_code == 303 and response.headers["location"].startswith("/login"):
        signed = sign_in(http, response.headers["location"], username)
        assert signed.status_code == 303, signed.text
        response = http.get(signed.headers["location"])
    if is_consent_page(response):
        response = allow(http, response)
    return response


def code_rows(store: SQLStore) -> list[dict[str, Any]]:
    def work(conn: Connection) -> list[dict[str, Any]]:
        query = select(authorization_codes).order_by(authorization_codes.c.created_at)
        return [dict(row) for row in conn.execute(query).mappings()]

    return anyio.run(store.runner.read, work)


def session_rows(store: SQLStore) -> list[dict[str, Any]]:
    def work(conn: Connection) -> list[dict[str, Any]]:
        query = select(sessions).order_by(sessions.c.created_at)
        return [dict(row) for row in conn.execute(query).mappings()]

    return anyio.run(store.runner.read, work)


def set_email(store: SQLStore, username: str, email: str) -> None:
    def work(conn: Connection) -> None:
        conn.execute(
            update(users)
            .where(users.c.username == username)
            .values(email=email, email_verified=True, profile=json.dumps({"name": "Alice A."}))
        )

    anyio.run(store.runner.write, work)


def id_token_for(http: TestClient, sub: str, aud: str, **claims: Any) -> str:
    """An ID token signed with the server's own RS256 key, as the ID-token endpoint would."""
    app: Baton = http.app.state.baton  # type: ignore[attr-defined]
    key = app.keys.key_for("RS256", app.clock.now())
    assert key is not None
    payload = {"iss": ISSUER, "sub": sub, "aud": aud, "iat": 1, "exp": 2} | claims
    header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    body = json.dumps(payload).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry("RS256"))


# -- OpenID Connect off ----------------------------------------------------------------------------


def test_openid_without_a_key_encryption_key_is_invalid_scope(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, _):
        client = new_client(store)
        error, description = error_at_client(http.get("/authorize", params=request_params(client)))
    assert error == "invalid_scope"
    assert description == "OpenID Connect needs a key-encryption key: set BATON_KEY_ENCRYPTION_KEY"


# -- the code and the session ----------------------------------------------------------------------


def test_the_code_carries_the_nonce_the_sessions_sid_and_the_sign_in(oidc: Running) -> None:
    http, store, clock = oidc
    client = new_client(store)
    signed_in_at = clock.now()
    query = at_client(go(http, request_params(client, scope="openid profile")))
    assert query["state"] == "st8" and query["iss"] == ISSUER and query["code"]
    [session] = session_rows(store)
    assert len(session["sid"]) >= 32 and json.loads(session["amr"]) == ["pwd"]
    assert session["acr"] is None
    [code] = code_rows(store)
    assert code["nonce"] == "n-0S6_WzA2Mj"
    assert code["sid"] == session["sid"]
    sign_in_fact = json.loads(code["sign_in"])
    assert sign_in_fact == {"auth_time": signed_in_at, "amr": ["pwd"]}
    assert code["scope"] == "openid profile"


def test_a_plain_oauth_code_has_no_oidc_facts(oidc: Running) -> None:
    http, store, _ = oidc
    client = new_client(store)
    query = at_client(go(http, request_params(client, scope="read")))
    assert query["code"]
    [code] = code_rows(store)
    assert (code["nonce"], code["sid"], code["sign_in"]) == (None, None, None)


def test_re_authentication_keeps_the_public_sid_and_another_user_gets_their_own(
    lite: Running,
) -> None:
    """prompt=login by the same user continues their session at the provider (a new cookie and
    auth_time, the same `sid`: the grants from before stay tied to what a sign-out ends);
    another user signing in on the browser is a session of their own."""
    http, store, clock = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    clock.advance(10)
    at_client(go(http, request_params(client, prompt="login")))
    clock.advance(10)
    at_client(go(http, request_params(client, prompt="login"), "bob"))
    first, again, bob = session_rows(store)
    assert first["ended_at"] is not None and again["ended_at"] is not None
    assert bob["ended_at"] is None
    assert first["digest"] != again["digest"] and first["created_at"] < again["created_at"]
    assert first["sid"] == again["sid"] != bob["sid"]
    assert [row["sid"] for row in code_rows(store)] == [first["sid"], first["sid"], bob["sid"]]


def test_a_session_row_gives_its_sign_in_until_it_ends(oidc: Running) -> None:
    _, store, _ = oidc
    bob = anyio.run(store.get_user, "bob")
    assert bob is not None

    async def scenario() -> list[LiveSession | None]:
        await store.start_session(b"n" * 32, bob.id, 100, 200, None, "sid-1", None, ("pwd",))
        # A session begun before OpenID Connect (no sid, no amr) still signs its user in.
        await store.start_session(b"o" * 32, bob.id, 100, 200, "127.0.0.1")
        seen = [await store.live_session(b"n" * 32, 150), await store.live_session(b"o" * 32, 150)]
        await store.end_session(b"n" * 32, 160)
        seen += [await store.live_session(b"n" * 32, 170), await store.live_session(b"o" * 32, 200)]
        return seen

    assert anyio.run(scenario) == [
        LiveSession(bob.id, 100, "sid-1", None, ("pwd",)),
        LiveSession(bob.id, 100, None, None, ()),
        None,  # ended
        None,  # expired
    ]


# -- nonce, request objects, registration ----------------------------------------------------------


def test_a_client_that_requires_a_nonce_gets_invalid_request_without_one(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store, require_nonce=True)
    params = request_params(client)
    del params["nonce"]
    error, description = error_at_client(http.get("/authorize", params=params))
    assert error == "invalid_request" and "nonce" in description
    # Other clients may leave it out (the code flow makes it optional, Core §3.1.2.1).
    relaxed = request_params(new_client(store))
    del relaxed["nonce"]
    assert at_client(go(http, relaxed))["code"]
    assert code_rows(store)[-1]["nonce"] is None


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
        ("registration", "registration_not_supported"),
    ],
)
def test_request_objects_and_registration_are_refused(lite: Running, name: str, error: str) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), **{name: "eyJhbGciOiJub25lIn0.e30."})
    assert error_at_client(http.get("/authorize", params=params))[0] == error


def test_plain_oauth_ignores_the_oidc_parameters(lite: Running) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), scope="read", prompt="bogus", max_age="x")
    assert at_client(go(http, params))["code"]


# -- prompt ----------------------------------------------------------------------------------------


def test_prompt_none_without_a_session_is_login_required(oidc: Running) -> None:
    http, store, _ = oidc
    params = request_params(new_client(store), prompt="none")
    error, _ = error_at_client(http.get("/authorize", params=params))
    assert error == "login_required"
    assert code_rows(store) == []


def test_prompt_none_answers_silently_once_allowed_and_asks_nothing(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client, scope="openid profile")))
    silent = http.get("/authorize", params=request_params(client, prompt="none", scope="openid"))
    assert at_client(silent)["code"]


def test_prompt_none_without_consent_is_consent_required(lite: Running) -> None:
    http, store, _ = lite
    at_client(go(http, request_params(new_client(store))))  # alice is signed in
    params = request_params(new_client(store), prompt="none")
    assert error_at_client(http.get("/authorize", params=params))[0] == "consent_required"


@pytest.mark.parametrize("prompt", ["none login", "none consent", "none select_account", "again"])
def test_prompt_none_with_another_value_or_an_unknown_value_is_invalid_request(
    lite: Running, prompt: str
) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), prompt=prompt)
    error, description = error_at_client(http.get("/authorize", params=params))
    assert error == "invalid_request" and "prompt" in description


def test_prompt_login_signs_in_again_and_moves_auth_time(lite: Running) -> None:
    http, store, clock = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    clock.advance(300)
    response = http.get("/authorize", params=request_params(client, prompt="login"))
    login = to_login(response)
    assert "reason=login" in login
    page = http.get(login)
    assert "asks you to sign in again" in page.text
    signed = sign_in(http, login)
    # Back at /authorize without `login`: no second sign-in, and no loop.
    back = http.get(signed.headers["location"])
    assert "prompt" not in parse_qs(urlsplit(signed.headers["location"]).query)
    assert at_client(back)["code"]
    assert json.loads(code_rows(store)[-1]["sign_in"])["auth_time"] == clock.now()


def test_prompt_consent_shows_the_page_even_when_remembered(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    assert at_client(http.get("/authorize", params=request_params(client)))["code"]
    page = http.get("/authorize", params=request_params(client, prompt="consent"))
    assert is_consent_page(page)
    assert at_client(allow(http, page))["code"]


def test_select_account_offers_the_signed_in_user_or_another(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    page = http.get("/authorize", params=request_params(client, prompt="select_account"))
    assert page.status_code == 200
    assert "Continue as alice" in page.text and "Use another account" in page.text
    # Continue as alice: the page's form, without select_account, answers at once.
    carried = {k: v[0] for k, v in hidden_fields(page.text).items()}
    assert "prompt" not in carried
    assert at_client(http.get("/authorize", params=carried))["code"]
    # Use another account: sign in as bob, and the code is bob's.
    page = http.get("/authorize", params=request_params(client, prompt="select_account"))
    other = page.text.split('<a href="')[1].split('"')[0].replace("&amp;", "&")
    assert other.startswith("/login?next=")
    signed = sign_in(http, other, "bob")
    response = http.get(signed.headers["location"])
    assert at_client(allow(http, response))["code"]
    bob = anyio.run(store.get_user, "bob")
    assert bob is not None and code_rows(store)[-1]["user_id"] == bob.id


def test_select_account_without_a_session_is_the_sign_in(lite: Running) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), prompt="select_account")
    assert at_client(go(http, params))["code"]


# -- max_age ---------------------------------------------------------------------------------------


def test_a_sign_in_older_than_max_age_signs_in_again(lite: Running) -> None:
    http, store, clock = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    signed_in_at = clock.now()
    clock.advance(30)
    assert at_client(http.get("/authorize", params=request_params(client, max_age="60")))["code"]
    clock.advance(60)  # 90 s since the sign-in
    silent = http.get("/authorize", params=request_params(client, max_age="60", prompt="none"))
    assert error_at_client(silent)[0] == "login_required"
    response = http.get("/authorize", params=request_params(client, max_age="60"))
    signed = sign_in(http, to_login(response))
    assert at_client(http.get(signed.headers["location"]))["code"]
    auth_time = json.loads(code_rows(store)[-1]["sign_in"])["auth_time"]
    assert auth_time == clock.now() and auth_time > signed_in_at


def test_max_age_zero_is_like_prompt_login(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    to_login(http.get("/authorize", params=request_params(client, max_age="0")))


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "99999999999"])
def test_a_max_age_that_is_not_a_non_negative_integer_is_invalid_request(
    lite: Running, max_age: str
) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), max_age=max_age)
    error, description = error_at_client(http.get("/authorize", params=params))
    assert error == "invalid_request" and "max_age" in description


# -- login_hint and id_token_hint ------------------------------------------------------------------


def test_login_hint_fills_in_the_username(lite: Running) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), login_hint="bob")
    page = http.get(to_login(http.get("/authorize", params=params)))
    assert 'name="username" autocomplete="username" value="bob"' in page.text
    hostile = request_params(new_client(store), login_hint='"><script>x()</script>')
    page = http.get(to_login(http.get("/authorize", params=hostile)))
    assert "<script>x()" not in page.text and "&#34;&gt;&lt;script&gt;" in page.text


def test_an_id_token_hint_naming_another_user_asks_to_sign_in(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))  # alice signed in
    bobs = id_token_for(http, "bob", client.id)
    silent = request_params(client, id_token_hint=bobs, prompt="none")
    assert error_at_client(http.get("/authorize", params=silent))[0] == "login_required"
    login = to_login(http.get("/authorize", params=request_params(client, id_token_hint=bobs)))
    assert "reason=account" in login
    assert "another account" in http.get(login).text
    signed = sign_in(http, login, "bob")
    response = http.get(signed.headers["location"])
    assert at_client(allow(http, response))["code"]


def test_an_expired_id_token_hint_naming_the_signed_in_user_answers(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    alices = id_token_for(http, "alice", client.id)  # exp long past
    params = request_params(client, id_token_hint=alices, prompt="none")
    assert at_client(http.get("/authorize", params=params))["code"]


def test_an_id_token_hint_is_compared_with_the_sub_its_own_client_saw(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    sector = "https://rp.example/sector.json"  # a loopback redirect URI is no sector
    pairwise = new_client(store, subject_type="pairwise", sector_identifier_uri=sector)
    at_client(go(http, request_params(client)))  # alice signed in
    app: Baton = http.app.state.baton  # type: ignore[attr-defined]
    assert app.pairwise_salt is not None
    alices = subject_for("alice", "pairwise", (REDIRECT_URI,), sector, app.pairwise_salt)
    assert alices != "alice"
    # Issued to the pairwise client, shown to another: alice's pairwise sub is still alice.
    hint = id_token_for(http, alices, pairwise.id)
    params = request_params(client, id_token_hint=hint, prompt="none")
    assert at_client(http.get("/authorize", params=params))["code"]
    # Her public identifier in a token of the pairwise client names no one signed in.
    wrong = id_token_for(http, "alice", pairwise.id)
    params = request_params(client, id_token_hint=wrong, prompt="none")
    assert error_at_client(http.get("/authorize", params=params))[0] == "login_required"


@pytest.mark.parametrize("hint", ["garbage", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."])
def test_an_id_token_hint_we_did_not_issue_is_invalid_request(lite: Running, hint: str) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), id_token_hint=hint)
    error, description = error_at_client(http.get("/authorize", params=params))
    assert error == "invalid_request" and "id_token_hint" in description


def test_an_id_token_hint_of_another_issuer_is_invalid_request(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    forged = id_token_for(http, "alice", client.id, iss="https://other.example")
    params = request_params(client, id_token_hint=forged)
    assert error_at_client(http.get("/authorize", params=params))[0] == "invalid_request"


# -- claims ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    ["not json", "[]", '{"id_token": []}', '{"userinfo": {"email": 1}}', "[" * 5000 + "]" * 5000],
)
def test_a_malformed_claims_request_is_invalid_request(lite: Running, claims: str) -> None:
    http, store, _ = lite
    params = request_params(new_client(store), claims=claims)
    error, description = error_at_client(http.get("/authorize", params=params))
    assert error == "invalid_request" and "claims" in description


def test_claims_asked_by_name_are_listed_and_released_once_allowed(lite: Running) -> None:
    http, store, _ = lite
    set_email(store, "alice", "alice@example.com")
    client = new_client(store)
    asked = json.dumps({"id_token": {"email": {"essential": True}}, "userinfo": {"name": None}})
    response = http.get("/authorize", params=request_params(client, claims=asked))
    signed = sign_in(http, to_login(response))
    page = http.get(signed.headers["location"])
    assert is_consent_page(page)
    assert "<code>email</code>" in page.text and "<code>name</code>" in page.text
    assert at_client(allow(http, page))["code"]
    fact = json.loads(code_rows(store)[-1]["sign_in"])
    assert fact["claims"] == {"email": "alice@example.com"}
    assert fact["userinfo"] == ["name"]


def test_claims_asked_by_name_are_not_released_without_consent(lite: Running) -> None:
    http, store, _ = lite
    set_email(store, "alice", "alice@example.com")
    client = new_client(store)
    at_client(go(http, request_params(client)))  # consent to `openid` alone
    asked = json.dumps({"id_token": {"email": None}})
    # Silent: nothing can be asked, so the claim is left out (§5.5.1: not an error).
    silent = http.get("/authorize", params=request_params(client, claims=asked, prompt="none"))
    assert at_client(silent)["code"]
    assert "claims" not in json.loads(code_rows(store)[-1]["sign_in"])
    # Otherwise the consent page asks for it.
    assert is_consent_page(http.get("/authorize", params=request_params(client, claims=asked)))


def test_a_claims_request_for_another_sub_asks_to_sign_in(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client)))
    asked = json.dumps({"id_token": {"sub": {"value": "bob"}}})
    silent = http.get("/authorize", params=request_params(client, claims=asked, prompt="none"))
    assert error_at_client(silent)[0] == "login_required"
    mine = json.dumps({"id_token": {"sub": {"value": "alice"}}})
    assert at_client(http.get("/authorize", params=request_params(client, claims=mine)))["code"]


# -- offline_access (§11) --------------------------------------------------------------------------


def test_the_consent_page_says_what_offline_access_means(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    params = request_params(client, scope="openid profile email offline_access")
    response = http.get("/authorize", params=params)
    page = http.get(sign_in(http, to_login(response)).headers["location"])
    assert is_consent_page(page)
    assert "keep access while you are signed out" in page.text
    assert "your email address" in page.text
    assert "keep access while you are away" in page.text  # the refresh token's terms
    at_client(allow(http, page))
    assert code_rows(store)[-1]["scope"] == "email offline_access openid profile"


def test_without_offline_access_the_page_promises_no_access_while_away(lite: Running) -> None:
    http, store, _ = lite
    response = http.get("/authorize", params=request_params(new_client(store)))
    page = http.get(sign_in(http, to_login(response)).headers["location"])
    assert "no access while you are signed out" in page.text
    assert "keep access while you are away" not in page.text


def test_offline_access_not_consented_is_asked_for_or_left_out(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    at_client(go(http, request_params(client, scope="openid profile")))
    offline = "openid profile offline_access"
    # Remembered consent without offline_access: asked now rather than granted silently...
    page = http.get("/authorize", params=request_params(client, scope=offline))
    assert is_consent_page(page) and "keep access while you are signed out" in page.text
    # ...and under prompt=none, which cannot ask, left out of the code's scope.
    silent = http.get("/authorize", params=request_params(client, scope=offline, prompt="none"))
    assert at_client(silent)["code"]
    assert code_rows(store)[-1]["scope"] == "openid profile"
    # Once allowed, the remembered consent covers it.
    at_client(allow(http, page))
    assert code_rows(store)[-1]["scope"] == "offline_access openid profile"
    again = http.get("/authorize", params=request_params(client, scope=offline, prompt="none"))
    assert at_client(again)["code"]
    assert code_rows(store)[-1]["scope"] == "offline_access openid profile"


def test_denying_offline_access_gives_the_client_nothing(lite: Running) -> None:
    http, store, _ = lite
    client = new_client(store)
    params = request_params(client, scope="openid offline_access")
    response = http.get("/authorize", params=params)
    page = http.get(sign_in(http, to_login(response)).headers["location"])
    error, _ = error_at_client(allow(http, page, "deny"))
    assert error == "access_denied" and code_rows(store) == []


# -- accepted and ignored --------------------------------------------------------------------------


def test_display_locales_and_acr_values_are_accepted_and_carried(lite: Running) -> None:
    http, store, _ = lite
    params = request_params(
        new_client(store),
        display="popup",
        ui_locales="fr-CA fr en",
        claims_locales="fr",
        acr_values="urn:mace:incommon:iap:silver",
    )
    response = http.get("/authorize", params=params)
    page = http.get(sign_in(http, to_login(response)).headers["location"])
    fields = hidden_fields(page.text)
    assert fields["ui_locales"] == ["fr-CA fr en"] and fields["acr_values"]
    assert at_client(allow(http, page))["code"]
    assert "acr" not in json.loads(code_rows(store)[-1]["sign_in"])


def test_allowing_only_while_signed_in_declines_offline_access_alone(lite: Running) -> None:
    """§11: offline access is the user's own choice on the consent page; declining it keeps the
    rest of what they allowed, and the client gets no refresh token."""
    http, store, _ = lite
    client = new_client(store)
    params = request_params(client, scope="openid profile offline_access")
    response = http.get("/authorize", params=params)
    page = http.get(sign_in(http, to_login(response)).headers["location"])
    assert 'value="allow_online"' in page.text
    at_client(allow(http, page, "allow_online"))
    assert code_rows(store)[-1]["scope"] == "openid profile"
    # Remembered without offline_access: the next request asks again rather than granting it.
    again = http.get("/authorize", params=params)
    assert is_consent_page(again)
    # A plain OAuth request is offered no such choice.
    plain = http.get("/authorize", params=request_params(client, scope="read"))
    assert is_consent_page(plain) and 'value="allow_online"' not in plain.text
    # ...nor accepted for one (review finding: it was taken as a plain Allow).
    crafted = http.post(
        "/authorize", data={**hidden_fields(plain.text), "decision": "allow_online"}
    )
    assert crafted.status_code == 400
