"""OpenID Connect's silent requests (`prompt=none`, Core §3.1.2.6) for a client no operator
vouched for (re-review #1, issue 26).

`login_required` and `consent_required` come before any page, as an invalid request's error
does: redirected at once to a self-registered client's redirect URI, they made the server an
open redirector for whoever registered it (RFC 9700 §4.11.2), with no session needed. Such a
client gets the error page with a link to the error's redirect instead, unless the signed-in
user has already allowed that client (a remembered consent): then the browser goes back to a
client this user chose. An operator's client keeps the redirect (tests/server/test_oidc_*)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.sql import SQLStore
from tests.support import hidden_fields, pkce_pair, register_user, sign_in
from tests.support import running_app as app_running

Running = tuple[TestClient, SQLStore, FakeClock]
CALLBACK = "https://app.example/callback"
WEB_APP = {"redirect_uris": [CALLBACK], "client_name": "Self-registered web app"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder: Path = tmp_path_factory.mktemp("silent")
    with app_running(
        folder,
        key_encryption_key="k" * 40,
        access_token_format="jwt",
        signing_alg="RS256",
        registration="open",
        dynamic_client_scopes=("read",),
    ) as run:
        register_user(run[1])
        yield run


def _request(client_id: str, **extra: str) -> dict[str, str]:
    _verifier, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | extra


def _linked_error(answer: httpx2.Response) -> str:
    """The error of a page that links to the client instead of redirecting to it."""
    assert answer.status_code == 400 and "location" not in answer.headers, answer.text
    assert "Return to app.example" in answer.text
    found = [unescape(href) for href in re.findall(r'<a href="([^"]+)"', answer.text)]
    [link] = [href for href in found if href.startswith(CALLBACK + "?")]
    query = parse_qs(urlsplit(link).query)
    assert query["state"] == ["s"]
    return query["error"][0]


def _redirected_error(answer: httpx2.Response) -> str:
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?"), location
    return parse_qs(urlsplit(location).query)["error"][0]


def test_no_session_is_a_page_not_a_redirect(running: Running) -> None:
    http, _store, _clock = running
    http.cookies.clear()
    client_id = http.post("/register", json=WEB_APP).json()["client_id"]
    answer = http.get("/authorize", params=_request(client_id, prompt="none"))
    assert _linked_error(answer) == "login_required"


def test_a_client_the_user_never_allowed_is_a_page_then_one_allowed_is_redirected(
    running: Running,
) -> None:
    http, _store, _clock = running
    http.cookies.clear()
    client_id = http.post("/register", json=WEB_APP).json()["client_id"]
    login = http.get("/authorize", params=_request(client_id))
    signed = sign_in(http, login.headers["location"])
    consent_page = http.get(signed.headers["location"])
    assert 'value="allow"' in consent_page.text  # signed in; nothing allowed yet
    silent = http.get("/authorize", params=_request(client_id, prompt="none"))
    assert _linked_error(silent) == "consent_required"

    allowed = http.post(
        "/authorize", data={**hidden_fields(consent_page.text), "decision": "allow"}
    )
    assert "code" in parse_qs(urlsplit(allowed.headers["location"]).query)
    # Alice allowed this client `openid`: its silent request for more is refused where it
    # asked, as for any client (the user chose to go back to it).
    wider = http.get("/authorize", params=_request(client_id, prompt="none", scope="openid read"))
    assert _redirected_error(wider) == "consent_required"
    # Another browser, no one signed in: nobody vouches for the redirect.
    http.cookies.clear()
    again = http.get("/authorize", params=_request(client_id, prompt="none"))
    assert _linked_error(again) == "login_required"
