"""examples/login_app, docs/login.md's "Bring your own login", end to end with real processes: a
`baton serve` whose `--login-url` and `--consent-url` point at the example app running under
uvicorn, and examples/oidc_rp.py (Authlib) as the relying party. The "browser" is an httpx
client that keeps cookies (Baton's and the app's share the host, as in a browser) and follows
each redirect by hand, so the test sees every page the person would.

One set of servers serves the module: the tests run in order and build on each other's state
(a remembered sign-in and consent, then their revocation over the admin API)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
import pytest
from examples.login_app.app import Baton, BatonError
from examples.login_app.users import User, hash_password, save_user
from examples.oidc_rp import SCOPE, RelyingParty

from tests.e2e.conftest import (
    _SERVERS,
    REDIRECT_URI,
    START_TIMEOUT,
    Seed,
    Server,
    cli_in_process,
    free_port,
    parse_form,
    spawn_uvicorn,
    start_server,
)

pytestmark = pytest.mark.e2e

KEK = "the e2e key-encryption key, 32+ characters long"
USERNAME, PASSWORD = "carol", "a password of the app's own"
SUBJECT = "u_carol_0001"  # the app's user id: the subject Baton receives, and the `sub`
EMAIL, NAME = "carol@example.com", "Carol Danvers"


@dataclass
class Stack:
    """Baton, the example app, and the clients registered for them."""

    baton: Server
    app_url: str
    app: subprocess.Popen[bytes]
    app_log: Path
    admin: tuple[str, str]  # the app's client: admin:challenges admin:sessions
    rp: tuple[str, str]  # the relying party's client

    def admin_token(self) -> str:
        response = httpx.post(
            self.baton.token_url,
            data={"grant_type": "client_credentials", "scope": "admin:sessions"},
            auth=self.admin,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def admin_delete(self, path: str, **params: str) -> None:
        response = httpx.delete(
            f"{self.baton.url}/admin/api/v1{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.admin_token()}"},
        )
        assert response.status_code == 204, response.text


def _create_clients(db: Path, *clients: list[str]) -> list[tuple[str, str]]:
    """`baton client create ... --json` for each of `clients`, in this process (a `baton`
    process spends a second on its imports first): their (client id, secret)."""
    created = []
    for args in clients:
        payload = json.loads(cli_in_process("client", "create", "--db", str(db), *args, "--json"))
        created.append((payload["client_id"], payload["client_secret"]))
    return created


@pytest.fixture(scope="module")
def stack(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("login_app")
    assert isinstance(seed.db, Path)
    (directory / "baton").mkdir()
    db = directory / "baton" / "baton.db"
    for suffix in ("", "-wal", "-shm"):  # the session's seed, copied
        if (source := seed.db.with_name(seed.db.name + suffix)).exists():
            shutil.copyfile(source, db.with_name(db.name + suffix))
    # docs/login.md's commands: the app's admin client, and a relying party.
    admin, rp = _create_clients(
        db,
        ["--name", "login app", "--scope", "admin:challenges admin:sessions"],
        ["--name", "Notes", "--redirect-uri", REDIRECT_URI, "--scope", SCOPE],
    )
    users = directory / "users.json"
    save_user(users, USERNAME, User(SUBJECT, hash_password(PASSWORD), EMAIL, NAME))
    app_url = f"http://127.0.0.1:{free_port()}"
    baton = start_server(
        replace(seed, db=db),
        directory / "baton",
        {
            "key_encryption_key": KEK,
            "login_url": app_url + "/login",
            "consent_url": app_url + "/consent",
            "rate_limit_login": "0",
        },
    )
    app: subprocess.Popen[bytes] | None = None
    app_log = directory / "app.log"
    try:
        env = {
            **os.environ,
            "BATON_ISSUER": baton.url,
            "LOGIN_APP_CLIENT_ID": admin[0],
            "LOGIN_APP_CLIENT_SECRET": admin[1],
            "LOGIN_APP_USERS": str(users),
        }
        port = int(app_url.rsplit(":", 1)[1])
        app = spawn_uvicorn(["--factory", "examples.login_app.app:create_app"], port, env, app_log)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert app.poll() is None, app_log.read_text()
            try:
                httpx.get(app_url + "/login")  # 400: no challenge, but it answers
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, app_log.read_text()
                time.sleep(0.05)
        yield Stack(baton, app_url, app, app_log, admin, rp)
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=10)
        baton.stop()
    from tests.secrets_scan import find_secrets

    text = app_log.read_text(errors="replace")
    assert not find_secrets(text) and PASSWORD not in text, "the login app logged a secret"


@pytest.fixture
def live(stack: Stack, request: pytest.FixtureRequest) -> Stack:
    """The module's stack; a failure's report carries Baton's log (conftest's hook reads it)."""
    request.node.stash[_SERVERS] = [stack.baton]
    return stack


@dataclass
class Trip:
    """One authorization through the browser: the redirect to the client, and the app's pages
    shown on the way (their paths, in order)."""

    location: str
    pages: list[str] = field(default_factory=list)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.location).query)


def authorize(
    browser: httpx.Client,
    stack: Stack,
    url: str,
    *,
    login: str = "accept",
    remember: bool = True,
    password: str = PASSWORD,
) -> Trip:
    """Follows `url` as a person would: each redirect by hand, the app's forms filled and
    posted (every scope allowed), up to (not into) the redirect back to the client."""
    trip = Trip("")
    response = browser.get(url)
    for _step in range(20):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(REDIRECT_URI + "?"):
                trip.location = location
                return trip
            response = browser.get(location)
            continue
        assert response.status_code == 200, (response.status_code, response.text)
        assert str(response.url).startswith(stack.app_url + "/"), response.url
        page = response.url.path
        trip.pages.append(page)
        form = parse_form(response.text)
        assert set(form.hidden) == {"challenge", "csrf"}, form.hidden
        data: dict[str, Any] = dict(form.hidden)
        if remember:
            data["remember"] = "1"
        if page == "/login":
            assert "Notes" in response.text  # the client's name, from the challenge
            data |= {"username": USERNAME, "password": password, "action": login}
        else:
            assert page == "/consent", page
            assert sorted(form.codes) == sorted(SCOPE.split()), form.codes
            data |= {"scope": form.codes, "action": "allow"}
        response = browser.post(str(response.url), data=data)
    raise AssertionError(f"no redirect to the client after 20 steps: {trip.pages}")


def relying_party(stack: Stack) -> RelyingParty:
    return RelyingParty(stack.baton.url, *stack.rp, REDIRECT_URI)


def signed_in(browser: httpx.Client, stack: Stack) -> tuple[Trip, dict[str, Any]]:
    """An authorization that must end with tokens: (the trip, the ID token's claims)."""
    rp = relying_party(stack)
    trip = authorize(browser, stack, rp.authorization_url())
    assert "code" in trip.query, trip.location
    assert trip.query["iss"] == [stack.baton.url]
    claims = rp.finish(trip.location)  # the code redeemed, the ID token validated
    assert claims["sub"] == SUBJECT
    info = rp.userinfo()  # the RP checks its `sub` is the ID token's
    # The consent app's claims, in both: given again when the remembered consent answers.
    assert (claims.get("email"), claims.get("name")) == (EMAIL, NAME), claims
    assert (info.get("email"), info.get("name")) == (EMAIL, NAME), info
    return trip, claims


def test_the_app_signs_in_consents_and_is_remembered_until_revoked(live: Stack) -> None:
    with httpx.Client(timeout=10) as browser:
        first, claims = signed_in(browser, live)
        assert first.pages == ["/login", "/consent"]
        assert claims["amr"] == ["pwd"]

        # `remember` on both: neither the login nor the consent app is asked again.
        again, _ = signed_in(browser, live)
        assert again.pages == []

        # The consent revoked over the admin API: asked again, the sign-in still holds.
        rp_id = live.rp[0]
        live.admin_delete(f"/subjects/{SUBJECT}/consents", client_id=rp_id)
        revoked, _ = signed_in(browser, live)
        assert revoked.pages == ["/consent"]

        # Signed out everywhere: the login app is asked again, the consent still remembered.
        live.admin_delete(f"/subjects/{SUBJECT}/sessions")
        signed_out, _ = signed_in(browser, live)
        assert signed_out.pages == ["/login"]


def test_a_cancel_at_the_login_app_reaches_the_client_as_access_denied(live: Stack) -> None:
    rp = relying_party(live)
    with httpx.Client(timeout=10) as browser:
        trip = authorize(browser, live, rp.authorization_url(), login="cancel")
    assert trip.pages == ["/login"]
    assert trip.query["error"] == ["access_denied"]
    assert trip.query["state"] == [rp.state]
    assert trip.query["iss"] == [live.baton.url]
    assert "code" not in trip.query


def test_a_wrong_password_shows_the_form_again(live: Stack) -> None:
    rp = relying_party(live)
    with httpx.Client(timeout=10) as browser:
        page = browser.get(rp.authorization_url(), follow_redirects=True)
        assert page.url.path == "/login", page.url
        data = {**parse_form(page.text).hidden, "username": USERNAME, "action": "accept"}
        wrong = browser.post(str(page.url), data={**data, "password": "not it"})
        assert wrong.status_code == 200 and "Wrong username or password" in wrong.text
        # The challenge is still good: the right password goes on to the consent app.
        right = browser.post(str(page.url), data={**data, "password": PASSWORD})
        assert right.is_redirect and right.headers["location"].startswith(live.baton.url + "/")


def test_a_form_posted_from_elsewhere_is_refused(live: Stack) -> None:
    """CSRF: a post must carry the token bound to this browser's cookie and the challenge."""
    rp = relying_party(live)
    with httpx.Client(timeout=10) as browser:
        page = browser.get(rp.authorization_url(), follow_redirects=True)
        fields = parse_form(page.text).hidden
        data = {**fields, "username": USERNAME, "password": PASSWORD, "action": "accept"}
        # Another site's page makes the browser post (the cookie goes along, the token can't).
        forged = browser.post(str(page.url), data={**data, "csrf": "0" * 64})
        assert forged.status_code == 403
    with httpx.Client(timeout=10) as attacker:  # the victim's token without its cookie
        stolen = attacker.post(str(page.url), data=data)
        assert stolen.status_code == 403


def test_a_malformed_challenge_never_reaches_the_admin_api(live: Stack) -> None:
    for challenge in ("../../subjects/x/sessions", "short", ""):
        response = httpx.get(live.app_url + "/login", params={"login_challenge": challenge})
        assert response.status_code == 400, response.text


# -- the app's admin API client, in process against a fake Baton --------------------------------


def _fake_baton(handler: Any) -> Baton:
    transport = httpx.MockTransport(handler)
    return Baton("https://id.example", "cl_app", "s3cret", httpx.AsyncClient(transport=transport))


def test_the_app_follows_only_redirects_to_the_issuer() -> None:
    baton = _fake_baton(lambda request: httpx.Response(500))
    ok = baton.go({"redirect_to": "https://id.example/authorize/resume?v=1"})
    assert ok.status_code == 303
    for elsewhere in ("https://evil.example/", "https://id.example.evil/x", "//evil.example/"):
        with pytest.raises(BatonError):
            baton.go({"redirect_to": elsewhere})


def test_the_admin_token_is_cached_and_fetched_again_after_a_401() -> None:
    issued: list[str] = []
    rejected: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            assert parse_qs(request.content.decode())["grant_type"] == ["client_credentials"]
            issued.append(f"at{len(issued)}")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 3600})
        token = request.headers["authorization"].removeprefix("Bearer ")
        if token in rejected:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json={"token": token})

    baton = _fake_baton(handler)

    async def calls() -> list[Any]:
        first = await baton.call("GET", "/login-challenges/x")
        second = await baton.call("GET", "/login-challenges/x")
        rejected.add("at0")  # e.g. the app's client had its token revoked
        third = await baton.call("GET", "/login-challenges/x")
        return [first, second, third]

    assert anyio.run(calls) == [{"token": "at0"}, {"token": "at0"}, {"token": "at1"}]
    assert issued == ["at0", "at1"]


class FakeAdminApi:
    """Baton's admin API as the contract describes it, recording what the app sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "at", "expires_in": 3600})
        body = json.loads(request.content) if request.content else None
        path = request.url.path.removeprefix("/admin/api/v1")
        self.sent.append((request.method, path, body))
        client = {
            "client_id": "cl_notes",
            "client_name": "Notes <b>",
            "client_uri": "https://notes.example",
            "redirect_uri": "https://notes.example/cb",
        }
        if request.method == "GET":
            kind, challenge = path.strip("/").split("/")
            return httpx.Response(
                200,
                json={
                    "challenge": challenge,
                    "client": client,
                    "subject": SUBJECT if kind == "consent-challenges" else None,
                    "requested_scope": ["openid", "email", "profile"],
                    "requested_resource": [],
                    "oidc": None,
                    "session": None,
                    "expires_at": 2_000_000_000,
                },
            )
        return httpx.Response(200, json={"redirect_to": "https://id.example/authorize/continue"})


@pytest.fixture
def app_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    from examples.login_app.app import create_app
    from starlette.testclient import TestClient

    users = tmp_path / "users.json"
    save_user(users, USERNAME, User(SUBJECT, hash_password(PASSWORD), EMAIL, NAME))
    monkeypatch.setenv("BATON_ISSUER", "https://id.example")
    monkeypatch.setenv("LOGIN_APP_CLIENT_ID", "cl_app")
    monkeypatch.setenv("LOGIN_APP_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("LOGIN_APP_USERS", str(users))
    fake = FakeAdminApi()
    app = create_app()
    app.state.baton = _fake_baton(fake)
    with TestClient(app, base_url="https://login.example", follow_redirects=False) as client:
        yield client, fake


def test_the_app_sends_the_contracts_bodies(app_client: tuple[Any, Any]) -> None:
    client, fake = app_client
    challenge = "C" * 43
    page = client.get("/login", params={"login_challenge": challenge})
    assert page.status_code == 200
    assert "Notes &lt;b&gt;" in page.text  # the client's name, escaped
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    form = {**parse_form(page.text).hidden, "username": USERNAME, "password": PASSWORD}
    accepted = client.post("/login", data={**form, "action": "accept", "remember": "1"})
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "https://id.example/authorize/continue"
    assert fake.sent[-1] == (
        "PUT",
        f"/login-challenges/{challenge}/accept",
        {"subject": SUBJECT, "remember": True, "amr": ["pwd"]},
    )
    cancelled = client.post("/login", data={**form, "action": "cancel"})
    assert cancelled.status_code == 303
    assert fake.sent[-1] == (
        "PUT",
        f"/login-challenges/{challenge}/reject",
        {"error": "access_denied"},
    )

    page = client.get("/consent", params={"consent_challenge": challenge})
    assert parse_form(page.text).codes == ["openid", "email", "profile"]
    assert "notes.example" in page.text  # the client's homepage and where it sends you back
    # `profile` unticked: no `name`.
    data = {**parse_form(page.text).hidden, "scope": ["openid", "email"], "action": "allow"}
    allowed = client.post("/consent", data=data)
    assert allowed.status_code == 303
    claims = {"email": EMAIL}
    assert fake.sent[-1] == (
        "PUT",
        f"/consent-challenges/{challenge}/accept",
        {
            "grant_scope": ["openid", "email"],
            "remember": False,
            "session": {"id_token": claims, "userinfo": claims},
        },
    )
