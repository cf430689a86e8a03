"""Every admin API route refuses a token without its scope (issue 27).

The routes and their scopes come from the route table (`TABLE.scoped()`), so a route added later
is checked without a line here: no token is a 401, a token holding every admin scope but the
route's own is a 403 `insufficient_scope` naming it, and the route's scope alone gets past the
check (whatever the route then answers of the made-up path and empty body, it is not 401/403).
Each answer is an RFC 9457 problem, never cached."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from baton.server.admin.api import PREFIX, AdminScope
from baton.server.routes import TABLE
from baton.server.routing import Endpoint
from baton.store.sql import SQLStore
from tests.support import RegisteredClient, client_credentials_token, register_client, running_app

EVERY_SCOPE = " ".join(AdminScope)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, SQLStore]]:
    with running_app(tmp_path_factory.mktemp("scopes")) as (http, store, _clock):
        yield http, store


@pytest.fixture(scope="module")
def app_client(running: tuple[TestClient, SQLStore]) -> RegisteredClient:
    return register_client(running[1], scope=EVERY_SCOPE, name="platform tooling")


def _cases() -> list[tuple[str, Endpoint]]:
    return [(method, e) for e in TABLE.scoped() for method in sorted(e.methods)]


def _call(
    http: TestClient, method: str, e: Endpoint, token: str | None
) -> tuple[int, dict[str, Any]]:
    path = e.path
    while "{" in path:
        start = path.index("{")
        path = path[:start] + "no-such-thing" + path[path.index("}", start) + 1 :]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    answer = http.request(method, path, headers=headers, **body)
    if answer.status_code in (401, 403):
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["cache-control"] == "no-store"
        assert "WWW-Authenticate" in answer.headers
    # Not every answer is JSON: the audit export's is JSON Lines.
    is_json = answer.headers.get("content-type", "").endswith("json")
    return answer.status_code, answer.json() if answer.content and is_json else {}


def test_the_admin_routes_declare_their_scopes() -> None:
    scoped = TABLE.scoped()
    assert scoped, "the admin API has routes"
    assert all(e.path.startswith(PREFIX) for e in scoped)
    admin_paths = [e for e in TABLE.endpoints if e.path.startswith(PREFIX)]
    assert admin_paths == list(scoped), "every admin API route names its scope"
    assert {e.scope for e in scoped} <= set(AdminScope)


@pytest.mark.parametrize(("method", "route"), _cases(), ids=lambda c: getattr(c, "path", c))
def test_each_route_refuses_a_token_without_its_scope(
    running: tuple[TestClient, SQLStore], app_client: RegisteredClient, method: str, route: Endpoint
) -> None:
    http = running[0]
    status, body = _call(http, method, route, None)
    assert status == 401 and body["type"] == "urn:baton:problem:invalid-token"

    others = " ".join(s for s in AdminScope if s != route.scope)
    status, body = _call(http, method, route, client_credentials_token(http, app_client, others))
    assert status == 403, (method, route.path, body)
    assert body["type"] == "urn:baton:problem:insufficient-scope"
    assert route.scope in body["detail"]

    status, body = _call(
        http, method, route, client_credentials_token(http, app_client, str(route.scope))
    )
    assert status not in (401, 403), (method, route.path, body)


def test_the_openapi_document_names_each_routes_scope(running: tuple[TestClient, SQLStore]) -> None:
    paths = running[0].get("/openapi.json").json()["paths"]
    for method, route in _cases():
        operation = paths[route.path][method.lower()]
        assert operation["security"] == [{"bearer": [route.scope]}]


def test_a_refusal_is_audited_by_its_route_never_by_a_challenge(
    running: tuple[TestClient, SQLStore], app_client: RegisteredClient
) -> None:
    """A login challenge is the login app's bearer secret: the audit log (which a SIEM exports)
    names a refused call by its route's template and its other parameters only."""
    http, store = running
    challenge = "the-login-challenge-" + "s" * 30
    token = client_credentials_token(http, app_client, str(AdminScope.AUDIT_READ))
    refused = http.get(
        f"{PREFIX}/login-challenges/{challenge}", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403
    rows, _ = anyio.run(store.admin().audit)
    assert not [r for r in rows if challenge in f"{r.target_id} {r.detail}"]
    (row,) = [r for r in rows if r.action == "admin_api.refused"][:1]
    assert row.target_id == f"{PREFIX}/login-challenges/{{challenge}}"
