"""Login and consent handed to the product's own apps (issue 25): /authorize makes a challenge,
the app decides over the admin API, the browser comes back with a one-time verifier.

In-process, on SQLite, under a fake clock; the "apps" are this test, calling the admin API with
a client_credentials token as a real app would. Each challenge rule has a test that fails
without it (reuse, expiry, another browser, the other kind, another client)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.tokens import TokenKind, digest, mint, random_id
from baton.core.vocabulary import RevocationCause
from baton.passwords import NO_PASSWORD
from baton.store.base import Client
from baton.store.schema import audit_log, auth_challenges, users
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    client_credentials_token,
    hidden_fields,
    pkce_pair,
    register_client,
    running_app,
)

KEK = "k" * 40
LOGIN_APP = "https://login.example/login"
CONSENT_APP = "https://login.example/consent"
API = "/admin/api/v1"
ADMIN_SCOPE = "admin:challenges admin:sessions"
Running = tuple[TestClient, SQLStore, FakeClock]


def _client(
    store: SQLStore,
    *,
    scope: str = "openid profile email offline_access read",
    public: bool = False,
    login_url: str | None = None,
    consent_url: str | None = None,
    client_uri: str | None = None,
    name: str = "Photo app",
) -> RegisteredClient:
    secret = None if public else mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest if secret else None,
        is_public=public,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope=scope,
        created_at=0,
        login_url=login_url,
        consent_url=consent_url,
        client_uri=client_uri,
    )
    anyio.run(store.create_client, client)
    return RegisteredClient(client.id, secret.plaintext if secret else None)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server for the module (starting one costs more than most tests here): each test
    has its own clients and browser (`http` forgets the cookies), so none sees another's."""
    with running_app(
        tmp_path_factory.mktemp("delegation"),
        key_encryption_key=KEK,
        login_url=LOGIN_APP,
        access_token_format="jwt",
        signing_alg="ES256",
    ) as app:
        yield app


@pytest.fixture
def http(running: Running) -> TestClient:
    """A fresh browser: no cookie of an earlier test."""
    running[0].cookies.clear()
    return running[0]


@pytest.fixture
def store(running: Running) -> SQLStore:
    return running[1]


@pytest.fixture
def clock(running: Running) -> FakeClock:
    return running[2]


@pytest.fixture
def rp(store: SQLStore) -> RegisteredClient:
    return _client(store, client_uri="https://photos.example/")


@pytest.fixture
def app_client(store: SQLStore) -> RegisteredClient:
    """The login app's own confidential client, allowed the admin scopes."""
    return register_client(store, scope=ADMIN_SCOPE, name="login app")


def admin_token(http: TestClient, app_client: RegisteredClient, scope: str = ADMIN_SCOPE) -> str:
    return client_credentials_token(http, app_client, scope)


@pytest.fixture
def token(http: TestClient, app_client: RegisteredClient) -> str:
    return admin_token(http, app_client)


def call(
    http: TestClient | httpx2.Client,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    **kwargs: Any,
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        kwargs["content"] = json.dumps(body)
        headers["Content-Type"] = "application/json"
    return http.request(method, API + path, headers=headers, **kwargs)


def start(
    http: TestClient | httpx2.Client,
    client: RegisteredClient,
    scope: str = "openid profile read",
    **extra: str,
) -> tuple[httpx2.Response, str]:
    """An authorization request; the response and the PKCE verifier."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "st",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return http.get("/authorize", params=params), verifier


def challenge_of(response: httpx2.Response, app_url: str = LOGIN_APP) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(app_url + "?"), location
    query = parse_qs(urlsplit(location).query)
    kind = "consent_challenge" if app_url == CONSENT_APP else "login_challenge"
    value = query[kind][0]
    assert len(value) >= 43
    return value


def accept_login(
    http: TestClient, token: str, challenge: str, subject: str = "carol", **body: Any
) -> str:
    response = call(
        http,
        "PUT",
        f"/login-challenges/{challenge}/accept",
        token,
        {
            "subject": subject,
            **body,
        },
    )
    assert response.status_code == 200, response.text
    redirect_to: str = response.json()["redirect_to"]
    assert redirect_to.startswith("http://baton.test/authorize/continue?")
    return redirect_to


def allow(http: TestClient, page: httpx2.Response) -> httpx2.Response:
    """The built-in consent page's Allow."""
    assert page.status_code == 200, page.text
    return http.post("/authorize", data={**hidden_fields(page.text), "decision": "allow"})


def code_of(response: httpx2.Response) -> dict[str, list[str]]:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return parse_qs(urlsplit(location).query)


def redeem(http: TestClient, client: RegisteredClient, code: str, verifier: str) -> dict[str, Any]:
    response = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=client.basic,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def signed_in(
    http: TestClient, token: str, rp: RegisteredClient, **accept: Any
) -> tuple[httpx2.Response, str]:
    """/authorize through the login app's accept: the answer after the verifier came back."""
    response, verifier = start(http, rp)
    redirect_to = accept_login(http, token, challenge_of(response), **accept)
    return http.get(redirect_to), verifier


# -- the login app ---------------------------------------------------------------------------------


def test_a_login_app_signs_in_the_subject_it_chose(
    http: TestClient, store: SQLStore, clock: FakeClock, rp: RegisteredClient, token: str
) -> None:
    response, verifier = start(http, rp, login_hint="carol", ui_locales="fr de")
    challenge = challenge_of(response)
    cookie = response.headers["set-cookie"].lower()
    assert "baton_flow=" in cookie and "httponly" in cookie and "path=/authorize" in cookie
    assert "samesite=lax" in cookie

    read = call(http, "GET", f"/login-challenges/{challenge}", token)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["challenge"] == challenge
    assert body["client"] == {
        "client_id": rp.id,
        "client_name": "Photo app",
        "client_uri": "https://photos.example/",
        "redirect_uri": REDIRECT_URI,
        # An operator's client: nothing to warn about (review #6's members).
        "registered_via": None,
        "verified": True,
        "host": None,
    }
    assert body["requested_scope"] == ["openid", "profile", "read"]
    assert body["oidc"]["login_hint"] == "carol"
    assert body["oidc"]["ui_locales"] == ["fr", "de"]
    assert body["session"] is None
    assert body["expires_at"] == clock.now() + 600

    redirect_to = accept_login(
        http, token, challenge, acr="urn:example:loa:2", amr=["pwd", "otp"], remember=True
    )
    page = http.get(redirect_to)
    query = code_of(allow(http, page))  # the built-in consent page: no consent app
    assert query["state"] == ["st"] and query["iss"] == ["http://baton.test"]
    tokens = redeem(http, rp, query["code"][0], verifier)
    id_token = claims_of(tokens["id_token"])
    assert id_token["sub"] == "carol"
    assert id_token["acr"] == "urn:example:loa:2"
    assert id_token["amr"] == ["pwd", "otp"]
    assert id_token["auth_time"] == clock.now()
    assert id_token["sid"]
    made = anyio.run(store.get_user, "carol")
    assert made is not None and made.password_hash == NO_PASSWORD


def test_a_remembered_sign_in_skips_the_login_app_next_time(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    page, _ = signed_in(http, token, rp, remember=True)
    code_of(allow(http, page))
    again, _ = start(http, rp)
    assert code_of(again)["code"]  # no login app, no consent page: a code


def test_remember_for_bounds_the_session(
    http: TestClient, rp: RegisteredClient, token: str, clock: FakeClock
) -> None:
    page, _ = signed_in(http, token, rp, remember=True, remember_for=120)
    code_of(allow(http, page))
    clock.advance(119)
    assert code_of(start(http, rp)[0])["code"]
    clock.advance(2)
    challenge_of(start(http, rp)[0])  # the session ended: the login app again


def test_expired_challenges_are_purged(
    http: TestClient, store: SQLStore, rp: RegisteredClient, clock: FakeClock
) -> None:
    challenge = challenge_of(start(http, rp)[0])

    def count() -> int:
        query = (
            select(func.count())
            .select_from(auth_challenges)
            .where(auth_challenges.c.digest == digest(challenge))
        )
        found: int = anyio.run(store.inspect, lambda c: c.execute(query).scalar_one())
        return found

    assert count() == 1
    anyio.run(store.purge, clock.now(), 0)
    assert count() == 1  # still live
    clock.advance(601)
    anyio.run(store.purge, clock.now(), 0)
    assert count() == 0


def test_a_sign_in_without_remember_serves_one_authorization(
    http: TestClient, rp: RegisteredClient, token: str, clock: FakeClock
) -> None:
    page, verifier = signed_in(http, token, rp)
    code = code_of(allow(http, page))["code"][0]
    id_token = claims_of(redeem(http, rp, code, verifier)["id_token"])
    assert id_token["sub"] == "carol" and id_token["auth_time"] == clock.now() and id_token["sid"]
    again, _ = start(http, rp)
    challenge = challenge_of(again)  # the login app is asked again
    assert call(http, "GET", f"/login-challenges/{challenge}", token).json()["session"] is None


def test_prompt_none_without_a_session_is_login_required_not_a_challenge(
    http: TestClient, rp: RegisteredClient
) -> None:
    response, _ = start(http, rp, prompt="none")
    query = code_of(response)
    assert query["error"] == ["login_required"] and query["state"] == ["st"]


def test_prompt_login_asks_the_login_app_again_and_shows_the_session(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    page, _ = signed_in(http, token, rp, remember=True)
    code_of(allow(http, page))
    again, _ = start(http, rp, prompt="login", max_age="60")
    body = call(http, "GET", f"/login-challenges/{challenge_of(again)}", token).json()
    assert body["oidc"]["prompt"] == ["login"] and body["oidc"]["max_age"] == 60
    assert body["session"]["subject"] == "carol"


def test_a_client_login_url_wins_over_the_server_one(http: TestClient, store: SQLStore) -> None:
    own = _client(store, login_url="https://own.example/signin")
    response, _ = start(http, own)
    challenge_of(response, "https://own.example/signin")


def test_a_login_reject_sends_the_error_to_the_client(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    response, _ = start(http, rp)
    rejected = call(
        http,
        "PUT",
        f"/login-challenges/{challenge_of(response)}/reject",
        token,
        {
            "error": "access_denied",
            "error_description": "the user said no",
        },
    )
    assert rejected.status_code == 200, rejected.text
    query = code_of(http.get(rejected.json()["redirect_to"]))
    assert query["error"] == ["access_denied"]
    assert query["error_description"] == ["the user said no"]
    assert query["state"] == ["st"] and query["iss"] == ["http://baton.test"]


REJECTS_REFUSED = [
    {"error": "server_error"},
    {"error": "access_denied", "error_description": 'quote "'},
]
LOGIN_ACCEPTS_REFUSED = [
    {},
    {"subject": ""},
    {"subject": "a\nb"},
    {"subject": "x" * 201},
    {"subject": "a", "amr": "pwd"},
    {"subject": "a", "remember": "yes"},
    {"subject": "a", "remember_for": -1},
]


def test_bad_login_decisions_are_400_problems(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    challenge = challenge_of(start(http, rp)[0])
    for path, body in [("reject", b) for b in REJECTS_REFUSED] + [
        ("accept", b) for b in LOGIN_ACCEPTS_REFUSED
    ]:
        answer = call(http, "PUT", f"/login-challenges/{challenge}/{path}", token, body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert set(answer.json()) >= {"type", "title", "status", "detail"}
    # not JSON at all
    answer = http.put(
        f"{API}/login-challenges/{challenge}/accept",
        content=b"subject=a",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    assert answer.status_code == 400
    # none of the refusals decided it
    assert call(http, "GET", f"/login-challenges/{challenge}", token).status_code == 200


def test_a_deleted_users_name_is_not_given_again(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    anyio.run(lambda: store.create_user("frank", NO_PASSWORD, 0))
    delete = update(users).where(users.c.username == "frank").values(deleted_at=1)
    anyio.run(store._change, lambda c: c.execute(delete))
    response, _ = start(http, rp)
    answer = call(
        http,
        "PUT",
        f"/login-challenges/{challenge_of(response)}/accept",
        token,
        {"subject": "frank"},
    )
    assert answer.status_code == 409


def test_a_disabled_user_cannot_be_accepted(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    anyio.run(lambda: store.create_user("dave", NO_PASSWORD, 0))
    disable = update(users).where(users.c.username == "dave").values(disabled_at=1)
    anyio.run(store._change, lambda c: c.execute(disable))
    response, _ = start(http, rp)
    answer = call(
        http,
        "PUT",
        f"/login-challenges/{challenge_of(response)}/accept",
        token,
        {"subject": "dave"},
    )
    assert answer.status_code == 409
    assert answer.json()["detail"] == "user disabled"


# -- the challenge rules ---------------------------------------------------------------------------


def test_a_verifier_is_used_once(http: TestClient, rp: RegisteredClient, token: str) -> None:
    page, _ = signed_in(http, token, rp)
    assert page.status_code == 200
    response, _ = start(http, rp)
    redirect_to = accept_login(http, token, challenge_of(response))
    assert http.get(redirect_to).status_code == 200
    replayed = http.get(redirect_to)
    assert replayed.status_code == 400 and "already used" in replayed.text


def test_a_challenge_decided_twice_is_409(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    accept_login(http, token, challenge)
    again = call(http, "PUT", f"/login-challenges/{challenge}/accept", token, {"subject": "eve"})
    assert again.status_code == 409
    assert call(http, "GET", f"/login-challenges/{challenge}", token).status_code == 409


def test_an_expired_challenge_is_refused(
    http: TestClient, rp: RegisteredClient, token: str, clock: FakeClock
) -> None:
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    redirect_to = accept_login(http, token, challenge)
    clock.advance(600)
    assert http.get(redirect_to).status_code == 400  # the verifier dies with its challenge
    response, _ = start(http, rp)
    late = challenge_of(response)
    clock.advance(601)
    assert call(http, "GET", f"/login-challenges/{late}", token).status_code == 410
    answer = call(http, "PUT", f"/login-challenges/{late}/accept", token, {"subject": "carol"})
    assert answer.status_code == 410


def test_a_verifier_from_another_browser_is_refused_and_not_burned(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    response, _ = start(http, rp)
    redirect_to = accept_login(http, token, challenge_of(response))
    other = TestClient(http.app, base_url="http://baton.test", follow_redirects=False)
    refused = other.get(redirect_to)
    assert refused.status_code == 403 and "another browser" in refused.text
    other.cookies.set("baton_flow", "x" * 43, domain="baton.test", path="/authorize")
    assert other.get(redirect_to).status_code == 403
    assert http.get(redirect_to).status_code == 200  # the right browser still can


def test_a_consent_verifier_is_not_a_login_verifier(
    http: TestClient, store: SQLStore, token: str
) -> None:
    rp = _client(store, consent_url=CONSENT_APP)
    page, _ = signed_in(http, token, rp, remember=True)
    challenge = challenge_of(page, CONSENT_APP)
    answer = call(http, "PUT", f"/consent-challenges/{challenge}/accept", token, {})
    redirect_to = answer.json()["redirect_to"]
    swapped = redirect_to.replace("consent_verifier", "login_verifier")
    assert http.get(swapped).status_code == 403
    assert code_of(http.get(redirect_to))["code"]
    # and a login challenge is not read as a consent one
    response, _ = start(http, rp, prompt="login")
    login = challenge_of(response)
    assert call(http, "GET", f"/consent-challenges/{login}", token).status_code == 404


def test_a_challenge_of_one_client_is_not_resumed_for_another(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    other = _client(store, name="Other app")
    response, _ = start(http, rp)
    redirect_to = accept_login(http, token, challenge_of(response))
    spliced = redirect_to.replace(rp.id, other.id)
    refused = http.get(spliced)
    assert refused.status_code == 403 and "another application" in refused.text
    assert http.get(redirect_to).status_code == 200


# -- the consent app -------------------------------------------------------------------------------


@pytest.fixture
def consenting(store: SQLStore) -> RegisteredClient:
    return _client(store, consent_url=CONSENT_APP)


def test_a_consent_app_grants_part_of_the_scope_and_gives_claims(
    http: TestClient, consenting: RegisteredClient, token: str
) -> None:
    page, verifier = signed_in(http, token, consenting, remember=True)
    consent = challenge_of(page, CONSENT_APP)
    read = call(http, "GET", f"/consent-challenges/{consent}", token)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["subject"] == "carol"
    assert body["requested_scope"] == ["openid", "profile", "read"]
    assert body["remembered"] is None
    assert body["requested_claims"] == {"id_token": [], "userinfo": []}
    accepted = call(
        http,
        "PUT",
        f"/consent-challenges/{consent}/accept",
        token,
        {
            "grant_scope": ["openid", "read"],
            "session": {"id_token": {"tenant": "acme"}, "userinfo": {"department": "R&D"}},
        },
    )
    assert accepted.status_code == 200, accepted.text
    query = code_of(http.get(accepted.json()["redirect_to"]))
    tokens = redeem(http, consenting, query["code"][0], verifier)
    assert set(tokens["scope"].split()) == {"openid", "read"}
    assert claims_of(tokens["id_token"])["tenant"] == "acme"
    info = http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": "carol", "department": "R&D"}


CONSENT_ACCEPTS_REFUSED = [
    {"grant_scope": ["openid", "write"]},
    {"grant_resource": ["https://elsewhere.example/"]},
    {"session": {"id_token": {"sub": "mallory"}}},
    {"session": {"userinfo": {"iss": "x"}}},
    {"session": []},
]


def test_a_consent_accept_beyond_the_request_is_400(
    http: TestClient, consenting: RegisteredClient, token: str
) -> None:
    page, _ = signed_in(http, token, consenting, remember=True)
    consent = challenge_of(page, CONSENT_APP)
    for body in CONSENT_ACCEPTS_REFUSED:
        answer = call(http, "PUT", f"/consent-challenges/{consent}/accept", token, body)
        assert answer.status_code == 400, (body, answer.text)


def test_remembered_consent_skips_the_consent_app_until_it_expires(
    http: TestClient, consenting: RegisteredClient, token: str, clock: FakeClock
) -> None:
    page, _ = signed_in(http, token, consenting, remember=True)
    consent = challenge_of(page, CONSENT_APP)
    accepted = call(
        http,
        "PUT",
        f"/consent-challenges/{consent}/accept",
        token,
        {
            "remember": True,
            "remember_for": 300,
            "session": {"id_token": {"tenant": "acme"}, "userinfo": {"department": "R&D"}},
        },
    )
    code_of(http.get(accepted.json()["redirect_to"]))
    again, verifier = start(http, consenting)
    code = code_of(again)["code"][0]  # remembered: neither app asked
    tokens = redeem(http, consenting, code, verifier)
    # the remembered decision gives the app's claims again
    assert claims_of(tokens["id_token"])["tenant"] == "acme"
    info = http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.json()["department"] == "R&D"
    clock.advance(301)
    later, _ = start(http, consenting)
    consent = challenge_of(later, CONSENT_APP)  # expired: asked again
    remembered = call(http, "GET", f"/consent-challenges/{consent}", token).json()["remembered"]
    assert remembered is None


def test_a_consent_reject_sends_the_error_to_the_client(
    http: TestClient, consenting: RegisteredClient, token: str
) -> None:
    page, _ = signed_in(http, token, consenting, remember=True)
    consent = challenge_of(page, CONSENT_APP)
    answer = call(
        http, "PUT", f"/consent-challenges/{consent}/reject", token, {"error": "consent_required"}
    )
    query = code_of(http.get(answer.json()["redirect_to"]))
    assert query["error"] == ["consent_required"] and query["state"] == ["st"]


# -- the admin API's authentication ---------------------------------------------------------------


def test_the_api_wants_a_bearer_token(http: TestClient, rp: RegisteredClient) -> None:
    response, _ = start(http, rp)
    answer = call(http, "GET", f"/login-challenges/{challenge_of(response)}", None)
    assert answer.status_code == 401
    # RFC 6750 §3.1: no credentials, so a challenge without an error code.
    assert answer.headers["www-authenticate"] == 'Bearer realm="baton"'
    assert answer.headers["content-type"] == "application/problem+json"
    assert call(http, "GET", "/login-challenges/x", "not-a-token").status_code == 401


def test_a_token_without_the_admin_scope_is_403(
    http: TestClient, store: SQLStore, rp: RegisteredClient
) -> None:
    weak = register_client(store, scope="read " + ADMIN_SCOPE)
    token = admin_token(http, weak, scope="read")
    response, _ = start(http, rp)
    answer = call(http, "GET", f"/login-challenges/{challenge_of(response)}", token)
    assert answer.status_code == 403
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    sessions_only = admin_token(http, weak, scope="admin:sessions")
    answer = call(
        http, "GET", f"/login-challenges/{challenge_of(start(http, rp)[0])}", sessions_only
    )
    assert answer.status_code == 403


def test_a_users_token_is_not_an_admin_token(http: TestClient, store: SQLStore, token: str) -> None:
    admin_rp = _client(store, scope="openid " + ADMIN_SCOPE)
    response, verifier = start(http, admin_rp, scope="openid admin:challenges")
    redirect_to = accept_login(http, token, challenge_of(response))
    code = code_of(allow(http, http.get(redirect_to)))["code"][0]
    users_token = redeem(http, admin_rp, code, verifier)["access_token"]
    answer = call(http, "GET", "/login-challenges/" + "a" * 43, users_token)
    assert answer.status_code == 403


def test_a_revoked_token_stops_at_once(
    http: TestClient, app_client: RegisteredClient, token: str, rp: RegisteredClient
) -> None:
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    assert call(http, "GET", f"/login-challenges/{challenge}", token).status_code == 200
    revoked = http.post("/revoke", data={"token": token}, auth=app_client.basic)
    assert revoked.status_code == 200
    assert call(http, "GET", f"/login-challenges/{challenge}", token).status_code == 401


def test_the_consoles_cookie_never_authenticates_the_api(
    http: TestClient, store: SQLStore, rp: RegisteredClient
) -> None:
    anyio.run(lambda: store.create_user("root", NO_PASSWORD, 0, admin=True))
    from baton.server.runtime import sessions

    # A signed-in administrator's console session, as the login form would begin it.
    secret = "s" * 43
    anyio.run(lambda: store.start_session(sessions.session_digest(secret), 1, 0, 10**9, None))
    signer = http.app.state.session_signer  # type: ignore[attr-defined]
    value = signer.sign(base64.b64encode(json.dumps({"sid": secret}).encode())).decode()
    http.cookies.set(sessions.COOKIE, value, domain="baton.test")
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    answer = call(http, "GET", f"/login-challenges/{challenge}", None)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers


def test_every_call_is_audited_without_the_challenge(
    http: TestClient,
    store: SQLStore,
    rp: RegisteredClient,
    app_client: RegisteredClient,
    token: str,
) -> None:
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    call(http, "GET", f"/login-challenges/{challenge}", token)
    accept_login(http, token, challenge)
    rows = anyio.run(
        store.inspect,
        lambda c: c.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all(),
    )
    actions = [(r["actor"], r["action"]) for r in rows]
    assert (f"client:{app_client.id}", "login_challenge.read") in actions
    assert (f"client:{app_client.id}", "login_challenge.accept") in actions
    text = json.dumps([dict(r) for r in rows], default=str)
    assert challenge not in text


def test_the_api_is_rate_limited_per_client(tmp_path: Path) -> None:
    with running_app(tmp_path, key_encryption_key=KEK, rate_limit_client=1.0) as (http, store, _):
        app_client = register_client(store, scope=ADMIN_SCOPE)
        token = admin_token(http, app_client)  # the token request takes one of two
        statuses = [
            call(http, "GET", "/login-challenges/" + "a" * 43, token).status_code for _ in range(3)
        ]
        assert statuses[0] == 404 and statuses[-1] == 429


# -- the delegated session state -------------------------------------------------------------------


def test_sign_out_everywhere_sends_the_next_authorization_to_the_login_app(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    page, _ = signed_in(http, token, rp, remember=True)
    code_of(allow(http, page))
    assert code_of(start(http, rp)[0])["code"]
    ended = call(http, "DELETE", "/subjects/carol/sessions", token)
    assert ended.status_code == 204, ended.text
    challenge_of(start(http, rp)[0])  # not skipped: the login app again
    assert call(http, "DELETE", "/subjects/nobody/sessions", token).status_code == 404


def test_revoked_consent_asks_the_consent_app_again(
    http: TestClient, consenting: RegisteredClient, token: str
) -> None:
    page, verifier = signed_in(http, token, consenting, remember=True)
    consent = challenge_of(page, CONSENT_APP)
    accepted = call(http, "PUT", f"/consent-challenges/{consent}/accept", token, {"remember": True})
    code = code_of(http.get(accepted.json()["redirect_to"]))["code"][0]
    tokens = redeem(http, consenting, code, verifier)
    assert code_of(start(http, consenting)[0])["code"]  # remembered
    forgotten = call(
        http, "DELETE", "/subjects/carol/consents", token, params={"client_id": consenting.id}
    )
    assert forgotten.status_code == 204, forgotten.text
    challenge_of(start(http, consenting)[0], CONSENT_APP)  # asked again
    info = http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401  # the grant was revoked with the consent


def test_a_revoked_grant_asks_the_consent_app_again(
    http: TestClient, store: SQLStore, consenting: RegisteredClient, token: str, clock: FakeClock
) -> None:
    page, verifier = signed_in(http, token, consenting, remember=True)
    consent = challenge_of(page, CONSENT_APP)
    accepted = call(http, "PUT", f"/consent-challenges/{consent}/accept", token, {"remember": True})
    code = code_of(http.get(accepted.json()["redirect_to"]))["code"][0]
    redeem(http, consenting, code, verifier)
    assert code_of(start(http, consenting)[0])["code"]  # remembered
    (summary,) = anyio.run(lambda: store.list_grants(client_id=consenting.id))
    # An operator's revocation (the console, `baton grants revoke`) forgets the consent.
    anyio.run(store.revoke_grant, summary.grant.id, clock.now(), RevocationCause.ADMIN)
    challenge_of(start(http, consenting)[0], CONSENT_APP)


def test_a_relying_partys_logout_sends_the_next_authorization_to_the_login_app(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    page, verifier = signed_in(http, token, rp, remember=True)
    code = code_of(allow(http, page))["code"][0]
    id_token = redeem(http, rp, code, verifier)["id_token"]
    ended = http.get("/session/end", params={"id_token_hint": id_token})
    assert ended.status_code == 200, ended.text  # a hint of this session: signed out at once
    challenge_of(start(http, rp)[0])
