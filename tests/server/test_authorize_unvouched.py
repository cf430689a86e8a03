"""/authorize for clients no operator vouched for, and for clients registered without the code
flow (review #8, review L1).

- A client whose `grant_types` leave out authorization_code gets RFC 6749 §4.1.2.1's
  `unauthorized_client`, before any page.
- A client anyone could have registered (RFC 7591, or a metadata document on a host the operator
  does not trust) is never redirected on an invalid request (RFC 9700 §4.11.2: the open
  redirector): the error page links to the error's redirect instead. An operator's client keeps
  the redirect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.schema import auth_challenges, clients
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorization_request,
    register_client,
    register_user,
    sign_in,
)
from tests.support import running_app as app_running

Running = tuple[TestClient, SQLStore, FakeClock]
CONSENT_APP = "https://consent.example/consent"
NATIVE = {
    "redirect_uris": ["https://app.example/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code"],
    "client_name": "Self-registered",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder: Path = tmp_path_factory.mktemp("unvouched")
    with app_running(
        folder, registration="open", dynamic_client_scopes=("read",), consent_url=CONSENT_APP
    ) as run:
        register_user(run[1])
        yield run


def _grant_types(store: SQLStore, client_id: str, grant_types: str) -> None:
    def work(conn: Connection) -> None:
        row = clients.c.id == client_id
        conn.execute(update(clients).where(row).values(grant_types=grant_types))

    anyio.run(store.runner.write, work)


def _link(html: str) -> str:
    found = [unescape(href) for href in re.findall(r'<a href="([^"]+)"', html)]
    [link] = [href for href in found if href.startswith("https://app.example/")]
    return link


def test_a_self_registered_client_is_not_redirected_on_a_bad_request(running: Running) -> None:
    http, _store, _clock = running
    client_id = http.post("/register", json=NATIVE).json()["client_id"]
    answer = http.get("/authorize", params={"client_id": client_id, "state": "s"})
    assert answer.status_code == 400 and "location" not in answer.headers
    link = _link(answer.text)
    query = parse_qs(urlsplit(link).query)
    assert link.startswith("https://app.example/callback?")
    assert query["error"] == ["unsupported_response_type"] and query["state"] == ["s"]
    assert "Return to app.example" in answer.text


def test_an_operator_client_keeps_the_redirect(running: Running) -> None:
    http, store, _clock = running
    client = register_client(store)
    answer = http.get("/authorize", params={"client_id": client.id})
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(REDIRECT_URI)


def test_a_client_without_the_code_flow_is_unauthorized(running: Running) -> None:
    http, store, _clock = running
    client = register_client(store, public=True)
    _grant_types(store, client.id, '["client_credentials"]')
    _verifier, params = authorization_request(RegisteredClient(client.id, None), scope="read")
    answer = http.get("/authorize", params=params)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["unauthorized_client"]


def test_the_consent_app_learns_the_client_is_not_verified(running: Running) -> None:
    """Review #6: a consent app gets what the built-in page says of a self-registered client."""
    http, store, _clock = running
    http.cookies.clear()
    metadata = {**NATIVE, "redirect_uris": ["http://127.0.0.1/callback"]}
    registered = {**metadata, "client_uri": "https://claims.example/home"}
    client_id = http.post("/register", json=registered).json()["client_id"]
    _verifier, params = authorization_request(RegisteredClient(client_id, None), scope="read")
    login = http.get("/authorize", params=params)
    consent = http.get(sign_in(http, login.headers["location"]).headers["location"])
    assert consent.headers["location"].startswith(CONSENT_APP + "?consent_challenge=")

    def carried(conn: Connection) -> list[str]:
        row = auth_challenges.c.client_id == client_id
        return list(conn.execute(select(auth_challenges.c.request).where(row)).scalars())

    [request] = anyio.run(store.inspect, carried)
    shown = json.loads(request)["client"]
    assert (shown["registered_via"], shown["verified"], shown["host"]) == (
        "dynamic",
        False,
        "claims.example",
    )
