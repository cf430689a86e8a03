"""The admin API's users, grants, consent, security events and audit log (issue 27), as an app
holding the admin scopes sees them: each action's effect where a user or a resource server
notices it (a disabled user's refresh fails and their session is gone; a revoked grant's access
token is inactive at introspection), the pages and cursors, the audit export a SIEM polls, and
the refusals (400 for bad input, 404, 409; never a 500).

In-process, on SQLite, one server for the module; each test makes its own users and clients."""

from __future__ import annotations

import base64
import functools
import json
import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.vocabulary import SecurityEventKind
from baton.passwords import verify_password
from baton.server.admin import api_records
from baton.server.admin.api import AdminScope
from baton.store.schema import audit_log, users
from baton.store.sql import SQLStore
from tests.support import (
    PASSWORD,
    RegisteredClient,
    authorization_request,
    client_credentials_token,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
    sign_in,
)

API = "/admin/api/v1"
EVERY_SCOPE = " ".join(AdminScope)
NEW_PASSWORD = "a brand new passphrase, long enough"
Running = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    # Argon2id with the cheapest parameters (as `tests.support` hashes its users' passwords):
    # a hash carries its parameters, so the real code verifies it, in a millisecond.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_records, "hash_password", cheap.hash)
        with running_app(tmp_path_factory.mktemp("records")) as app:
            yield app


@pytest.fixture
def http(running: Running) -> TestClient:
    running[0].cookies.clear()
    return running[0]


@pytest.fixture
def store(running: Running) -> SQLStore:
    return running[1]


@pytest.fixture(scope="module")
def app_client(running: Running) -> RegisteredClient:
    return register_client(running[1], scope=EVERY_SCOPE, name="platform tooling")


@pytest.fixture(scope="module")
def resource_server(running: Running) -> RegisteredClient:
    return register_client(running[1], resource_server=True, name="api")


@pytest.fixture
def token(http: TestClient, app_client: RegisteredClient) -> str:
    return client_credentials_token(http, app_client, EVERY_SCOPE)


def call(
    http: TestClient, method: str, path: str, token: str, body: Any = None, **kw: Any
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        kw["content"] = json.dumps(body)
        headers["Content-Type"] = "application/json"
    return http.request(method, API + path, headers=headers, **kw)


def problem(answer: httpx2.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    if kind is not None:
        assert body["type"] == f"urn:baton:problem:{kind}", body
    return body


def fresh_name(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def new_user(store: SQLStore, prefix: str = "user") -> str:
    name = fresh_name(prefix)
    register_user(store, name)
    return name


def audit_actions(store: SQLStore, target: str) -> list[tuple[str, str]]:
    def work(conn: Connection) -> list[tuple[str, str]]:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action)
            .where(audit_log.c.target_id == target)
            .order_by(audit_log.c.id)
        )
        return [(r.actor, r.action) for r in rows]

    return anyio.run(store.runner.read, work)


def every_audit_id(store: SQLStore) -> list[int]:
    def work(conn: Connection) -> list[int]:
        return list(conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars())

    return anyio.run(store.runner.read, work)


def password_hash(store: SQLStore, username: str) -> str:
    def work(conn: Connection) -> str:
        stmt = select(users.c.password_hash).where(users.c.username == username)
        return str(conn.execute(stmt).scalar_one())

    return anyio.run(store.runner.read, work)


def signed_in_pair(http: TestClient, client: RegisteredClient, username: str) -> dict[str, Any]:
    """A first token pair of `username`, signed in through /authorize and /login as a browser."""
    http.cookies.clear()
    _verifier, params = authorization_request(client, scope="read")
    page = http.get("/authorize", params=params)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert sign_in(http, page.headers["location"], username).status_code == 303
    return first_pair(http, client, scope="read")


def collect(http: TestClient, token: str, path: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a list, page by page along `next_cursor`."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    sep = "&" if "?" in path else "?"
    for _ in range(1000):
        query = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        answer = call(http, "GET", query, token)
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        page = answer.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never end")


# -- users ---------------------------------------------------------------------------------------


def test_users_are_listed_page_by_page_without_secrets(
    http: TestClient, store: SQLStore, token: str
) -> None:
    prefix = fresh_name("page")
    names = sorted(f"{prefix}-{i}" for i in range(5))
    for name in names:
        register_user(store, name)
    listed = collect(http, token, "/users", 2)
    mine = [u["username"] for u in listed if u["username"].startswith(prefix)]
    assert mine == names  # by name, each once
    assert len({u["username"] for u in listed}) == len(listed)
    alice = next(u for u in listed if u["username"] == names[0])
    assert alice["has_password"] is True and alice["admin"] is False
    assert alice["mfa_enrolled"] is False and alice["disabled"] is False
    assert isinstance(alice["created_at"], int) and alice["last_sign_in_at"] is None
    text = json.dumps(listed)
    assert password_hash(store, names[0]) not in text
    assert "password_hash" not in text and "totp" not in text


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "cursor=%25%25%25",
        "cursor=" + "A" * 2000,
        "cursor=AA",  # a NUL
        "cursor=YWxpY2U=",  # padded: not the spelling given
    ],
)
def test_a_bad_limit_or_cursor_is_a_400(http: TestClient, token: str, query: str) -> None:
    for path in ("/users", "/grants", "/consents", "/security-events", "/audit"):
        problem(call(http, "GET", f"{path}?{query}", token), 400, "bad-request")


@pytest.mark.parametrize("pair", ['["\\ud800","x"]', '["a","\\udfff"]', '["\\u0000","x"]'])
def test_a_consent_cursor_spelling_a_nul_or_a_lone_surrogate_is_a_400(
    http: TestClient, token: str, pair: str
) -> None:
    """JSON's escapes inside the cursor spell what its own text cannot hold: a 400, never a
    500 at the database."""
    cursor = base64.urlsafe_b64encode(pair.encode()).decode().rstrip("=")
    problem(call(http, "GET", f"/consents?cursor={cursor}", token), 400, "bad-request")


def test_a_user_is_shown_never_their_password_or_second_factor(
    http: TestClient, store: SQLStore, token: str
) -> None:
    name = new_user(store)
    answer = call(http, "GET", f"/users/{name}", token)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["username"] == name and shown["deleted_at"] is None
    assert password_hash(store, name) not in answer.text
    assert not {k for k in shown if "password" in k} - {"has_password", "password_changed_at"}
    problem(call(http, "GET", "/users/nobody-here", token), 404, "unknown-user")


def test_a_user_is_created_with_claims_and_a_password_the_policy_allows(
    http: TestClient, store: SQLStore, token: str, app_client: RegisteredClient
) -> None:
    name = fresh_name("made")
    body = {"username": name, "password": NEW_PASSWORD, "email": "m@example.com", "name": "M"}
    answer = call(http, "POST", "/users", token, body)
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"{API}/users/{name}"
    made = answer.json()
    assert made["email"] == "m@example.com" and made["email_verified"] is False
    assert made["profile"] == {"name": "M"} and made["has_password"] is True
    assert made["admin"] is False
    assert verify_password(password_hash(store, name), NEW_PASSWORD)
    assert NEW_PASSWORD not in json.dumps(audit_actions(store, name))
    assert audit_actions(store, name) == [(f"client:{app_client.id}", "user.create")]
    # Taken, and refused by the policy.
    problem(call(http, "POST", "/users", token, body), 409, "user-exists")
    weak = {"username": fresh_name(), "password": "password"}
    assert "at least" in problem(call(http, "POST", "/users", token, weak), 400)["detail"]
    common = {"username": fresh_name(), "password": "password1234"}
    problem(call(http, "POST", "/users", token, common), 400, "password-policy")
    # No password: a user of a login app or an upstream provider.
    bare = call(http, "POST", "/users", token, {"username": fresh_name("bare")})
    assert bare.status_code == 201 and bare.json()["has_password"] is False


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"username": "x-admin", "admin": True}, "console administrator"),
        ({"username": "x-admin", "admin": False}, "console administrator"),
        ({"username": "x-u", "is_admin": True}, "is_admin"),
        ({"username": "x-u", "colour": "red"}, "colour"),
        ({"username": "x/y"}, "username"),
        ({"username": ""}, "username"),
        ({"username": 7}, "username"),
        ({}, "username"),
        ({"username": "x-e", "email": "not an address"}, "email"),
        ({"username": "x-e", "email": 5}, "email"),
        ({"username": "x-e", "email_verified": True}, "email"),
        ({"username": "x-p", "password": 12345678901234}, "password"),
        ({"username": "x-w", "website": "javascript:alert(1)"}, "website"),
    ],
)
def test_a_bad_new_user_is_a_400_naming_the_problem(
    http: TestClient, store: SQLStore, token: str, body: dict[str, Any], says: str
) -> None:
    detail = problem(call(http, "POST", "/users", token, body), 400)["detail"]
    assert says in detail
    name = body.get("username")
    if isinstance(name, str) and name:
        assert anyio.run(store.get_user, name) is None


@pytest.mark.parametrize(
    ("content", "media"),
    [
        ("[]", "application/json"),
        ("{", "application/json"),
        ("a=b", "text/plain"),
        ("", ""),
        ('{"username": "x\\ud800"}', "application/json"),  # a lone surrogate: no column takes it
        ('{"username": "x", "name": "\\udfff"}', "application/json"),
        ('{"username": NaN}', "application/json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    http: TestClient, token: str, content: str, media: str
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": media}
    answer = http.post(f"{API}/users", content=content, headers=headers)
    problem(answer, 400, "bad-body")


def test_the_api_never_makes_or_changes_a_console_administrator(
    http: TestClient, store: SQLStore, token: str
) -> None:
    """An app holding admin:users:write must not get the console: it cannot make an
    administrator, nor take one over by setting their password, nor lock them out."""
    name = fresh_name("root")
    anyio.run(lambda: store.create_user(name, "$argon2id$v=19$m=1024,t=1,p=1$x$y", 0, admin=True))
    before = password_hash(store, name)
    problem(call(http, "PUT", f"/users/{name}/password", token, {"password": NEW_PASSWORD}), 409)
    problem(call(http, "PATCH", f"/users/{name}", token, {"email": "me@evil.example"}), 409)
    problem(call(http, "POST", f"/users/{name}/disable", token), 409, "console-admin")
    problem(call(http, "DELETE", f"/users/{name}", token), 409, "console-admin")
    problem(call(http, "PATCH", f"/users/{name}", token, {"admin": True}), 400)
    other = new_user(store)
    problem(call(http, "PATCH", f"/users/{other}", token, {"admin": True}), 400)
    found = anyio.run(store.get_user, name)
    assert found is not None and found.disabled_at is None and found.email is None
    assert password_hash(store, name) == before
    promoted = anyio.run(store.get_user, other)
    assert promoted is not None and not promoted.is_admin


def test_claims_are_set_and_cleared_by_a_merge_patch(
    http: TestClient, store: SQLStore, token: str
) -> None:
    name = new_user(store)
    path = f"/users/{name}"
    set_ = call(http, "PATCH", path, token, {"email": "a@example.com", "locale": "fr-FR"})
    assert set_.status_code == 200, set_.text
    assert set_.json()["email"] == "a@example.com" and set_.json()["profile"] == {"locale": "fr-FR"}
    cleared = call(http, "PATCH", path, token, {"locale": None, "email_verified": True})
    assert cleared.json()["profile"] == {} and cleared.json()["email_verified"] is True
    assert cleared.json()["email"] == "a@example.com"
    assert call(http, "PATCH", path, token, {}).json() == cleared.json()
    assert "colour" in problem(call(http, "PATCH", path, token, {"colour": "x"}), 400)["detail"]
    assert "password" in problem(call(http, "PATCH", path, token, {"password": "x"}), 400)["detail"]
    problem(call(http, "PATCH", path, token, {"birthdate": "yesterday"}), 400)
    problem(call(http, "PATCH", "/users/nobody-here", token, {"name": "x"}), 404)
    assert [a for _, a in audit_actions(store, name)] == ["user.set_claims", "user.set_claims"]


def test_a_password_is_set_from_the_body_under_the_policy(
    http: TestClient, store: SQLStore, token: str
) -> None:
    name = new_user(store)
    path = f"/users/{name}/password"
    answer = call(http, "PUT", path, token, {"password": NEW_PASSWORD})
    assert answer.status_code == 204, answer.text
    assert verify_password(password_hash(store, name), NEW_PASSWORD)
    assert not verify_password(password_hash(store, name), PASSWORD)
    problem(call(http, "PUT", path, token, {"password": name}), 400, "password-policy")
    problem(call(http, "PUT", path, token, {}), 400)
    problem(call(http, "PUT", path, token, {"password": NEW_PASSWORD, "x": 1}), 400)
    problem(
        call(http, "PUT", "/users/nobody-here/password", token, {"password": NEW_PASSWORD}), 404
    )
    assert [a for _, a in audit_actions(store, name)] == ["user.set_password"]


def test_disabling_a_user_ends_their_session_and_their_refresh_fails(
    http: TestClient, store: SQLStore, token: str, resource_server: RegisteredClient
) -> None:
    name = new_user(store)
    client = register_client(store, scope="read")
    pair = signed_in_pair(http, client, name)
    assert introspect(http, resource_server, pair["access_token"])["active"] is True
    admin_headers = {"Authorization": f"Bearer {token}"}
    answer = http.post(f"{API}/users/{name}/disable", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"username": name, "sessions_ended": 1, "grants_revoked": 1}
    refused = refresh(http, client, pair["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert introspect(http, resource_server, pair["access_token"]) == {"active": False}
    # The browser's session is gone: /authorize asks for a sign-in again.
    _verifier, params = authorization_request(client, scope="read")
    again = http.get("/authorize", params=params)
    assert again.status_code == 303 and again.headers["location"].startswith("/login")
    shown = call(http, "GET", f"/users/{name}", token).json()
    assert shown["disabled"] is True and shown["last_sign_in_at"] is not None
    problem(call(http, "POST", f"/users/{name}/disable", token), 409, "user-disabled")
    enabled = call(http, "POST", f"/users/{name}/enable", token)
    assert enabled.status_code == 200 and enabled.json()["username"] == name
    problem(call(http, "POST", f"/users/{name}/enable", token), 409, "user-not-disabled")
    problem(call(http, "POST", "/users/nobody-here/disable", token), 404, "unknown-user")
    assert [a for _, a in audit_actions(store, name)] == ["user.disable", "user.enable"]


def test_deleting_a_user_erases_them_and_keeps_the_name(
    http: TestClient, store: SQLStore, token: str
) -> None:
    name = new_user(store)
    call(http, "PATCH", f"/users/{name}", token, {"email": "gone@example.com"})
    answer = call(http, "DELETE", f"/users/{name}", token)
    assert answer.status_code == 204 and answer.content == b""
    shown = call(http, "GET", f"/users/{name}", token).json()
    assert shown["deleted_at"] is not None and shown["email"] is None
    assert shown["has_password"] is False
    assert name not in {u["username"] for u in collect(http, token, "/users", 200)}
    problem(call(http, "POST", "/users", token, {"username": name}), 409, "username-reserved")
    problem(call(http, "DELETE", f"/users/{name}", token), 409, "user-deleted")
    problem(call(http, "POST", f"/users/{name}/enable", token), 409, "user-deleted")
    problem(call(http, "DELETE", "/users/nobody-here", token), 404)


# -- grants --------------------------------------------------------------------------------------


def test_grants_are_listed_by_user_client_and_status_and_revoked(
    http: TestClient, store: SQLStore, token: str, resource_server: RegisteredClient
) -> None:
    name = new_user(store)
    client = register_client(store, scope="read")
    pairs = []
    for _ in range(3):
        first = signed_in_pair(http, client, name)
        rotated = refresh(http, client, first["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        pairs.append(rotated.json())
    listed = collect(http, token, f"/grants?username={name}", 2)
    assert len(listed) == 3 and {g["status"] for g in listed} == {"active"}
    assert {g["client_id"] for g in listed} == {client.id}
    assert collect(http, token, f"/grants?client_id={client.id}&status=revoked", 50) == []
    grant_id = listed[0]["id"]

    shown = call(http, "GET", f"/grants/{grant_id}", token)
    assert shown.status_code == 200, shown.text
    family = shown.json()["family"]
    assert family["generations"] == 2 and family["current"]["generation"] == 1
    assert family["current"]["access_expires_at"] > 0 and family["events"] == []
    for pair in pairs:
        assert pair["access_token"] not in shown.text and pair["refresh_token"] not in shown.text

    revoked = call(http, "POST", f"/grants/{grant_id}/revoke", token)
    assert revoked.status_code == 200 and revoked.json() == {"grant_id": grant_id, "revoked": True}
    which = next(
        p
        for p in pairs
        if introspect(http, resource_server, p["access_token"]) == {"active": False}
    )
    assert refresh(http, client, which["refresh_token"]).status_code == 400
    others = [p for p in pairs if p is not which]
    assert all(introspect(http, resource_server, p["access_token"])["active"] for p in others)
    problem(call(http, "POST", f"/grants/{grant_id}/revoke", token), 409, "grant-revoked")
    now_revoked = collect(http, token, f"/grants?username={name}&status=revoked", 50)
    assert [g["id"] for g in now_revoked] == [grant_id]
    assert now_revoked[0]["revoked_reason"] == "admin"
    assert [a for _, a in audit_actions(store, grant_id)] == ["grant.revoke"]
    problem(call(http, "GET", "/grants/no-such-grant", token), 404, "unknown-grant")
    problem(call(http, "POST", "/grants/no-such-grant/revoke", token), 404, "unknown-grant")
    problem(call(http, "GET", "/grants?status=alive", token), 400)


# -- consent -------------------------------------------------------------------------------------


def test_a_remembered_consent_is_listed_and_forgotten_with_its_grants(
    http: TestClient, store: SQLStore, token: str, resource_server: RegisteredClient
) -> None:
    name = new_user(store)
    client = register_client(store, scope="read")
    pair = signed_in_pair(http, client, name)
    user = anyio.run(store.get_user, name)
    assert user is not None
    now = int(running_clock(http).now())
    anyio.run(lambda: store.remember_consent(user.id, client.id, frozenset({"read"}), (), now))
    listed = collect(http, token, f"/consents?username={name}", 50)
    assert listed == [
        {
            "username": name,
            "client_id": client.id,
            "scope": "read",
            "resources": [],
            "updated_at": now,
            "expires_at": None,
        }
    ]
    assert collect(http, token, f"/consents?client_id={client.id}", 50) == listed
    answer = call(http, "DELETE", f"/consents/{name}/{client.id}", token)
    assert answer.status_code == 204, answer.text
    assert collect(http, token, f"/consents?username={name}", 50) == []
    assert introspect(http, resource_server, pair["access_token"]) == {"active": False}
    assert [a for _, a in audit_actions(store, name)] == ["subject.consents.delete"]
    problem(call(http, "DELETE", f"/consents/{name}/cl_nothing", token), 404, "unknown-client")
    problem(call(http, "DELETE", f"/consents/nobody-here/{client.id}", token), 404)


def running_clock(http: TestClient) -> FakeClock:
    clock: FakeClock = http.app.state.baton.clock  # type: ignore[attr-defined]
    return clock


def test_consents_are_paged(http: TestClient, store: SQLStore, token: str) -> None:
    name = new_user(store)
    user = anyio.run(store.get_user, name)
    assert user is not None
    clients = [register_client(store, scope="read") for _ in range(5)]
    for client in clients:
        anyio.run(store.remember_consent, user.id, client.id, frozenset(), (), 0)
    listed = collect(http, token, f"/consents?username={name}", 2)
    assert [c["client_id"] for c in listed] == sorted(c.id for c in clients)


# -- security events and the audit log ---------------------------------------------------------


def test_security_events_newest_first_by_kind(
    http: TestClient, store: SQLStore, token: str
) -> None:
    admin = store.admin()
    subject = fresh_name("locked")
    for i in range(3):
        event = functools.partial(admin.record_security_event, subject=subject, detail=f"n{i}")
        anyio.run(event, SecurityEventKind.LOGIN_LOCKOUT, 1000 + i)
    listed = collect(http, token, "/security-events?kind=login_lockout", 2)
    mine = [e for e in listed if e["username"] == subject]
    assert [e["detail"] for e in mine] == ["n2", "n1", "n0"]
    assert all(e["kind"] == "login_lockout" for e in listed)
    ids = [int(e["id"]) for e in listed]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    problem(call(http, "GET", "/security-events?kind=bad_thing", token), 400)


def test_the_audit_log_newest_first_page_by_page(
    http: TestClient, store: SQLStore, token: str
) -> None:
    new_user(store)
    listed = collect(http, token, "/audit", 7)
    assert [int(r["id"]) for r in listed] == every_audit_id(store)[::-1]
    assert all(r["detail"] is None or isinstance(r["detail"], dict) for r in listed)


def _export(http: TestClient, token: str, after: int, limit: int) -> tuple[list[Any], int]:
    answer = call(http, "GET", f"/audit/export?after={after}&limit={limit}", token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/jsonl"
    assert answer.headers["cache-control"] == "no-store"
    lines = answer.text.splitlines()
    assert answer.text == "".join(line + "\n" for line in lines)
    return [json.loads(line) for line in lines], int(answer.headers["baton-next-after"])


def test_polling_the_export_yields_every_row_once_in_order_while_writes_happen(
    http: TestClient, store: SQLStore, token: str
) -> None:
    after, seen, polls = 0, [], 0
    while True:
        rows, following = _export(http, token, after, 3)
        polls += 1
        seen += rows
        if rows:
            assert following == int(rows[-1]["id"])
        else:
            assert following == after
        after = following
        if polls < 6:
            # Writes between polls: each audited (user.create), with ids past the cursor.
            call(http, "POST", "/users", token, {"username": fresh_name("poll")})
        elif not rows:
            break
    ids = [int(r["id"]) for r in seen]
    assert ids == every_audit_id(store)  # every row, once, ascending
    assert (
        sum(r["action"] == "user.create" and r["target_id"].startswith("poll") for r in seen) >= 5
    )
    # A row is the /audit item: its detail parsed.
    created = next(r for r in seen if r["action"] == "user.create")
    assert isinstance(created["detail"], dict) and created["actor"].startswith("client:")
    rows, following = _export(http, token, ids[-1] + 1000, 10)
    assert rows == [] and following == ids[-1] + 1000
    assert len(_export(http, token, 0, 1)[0]) == 1
    default, _ = _export(http, token, 0, 1000)
    assert len(default) == min(1000, len(ids))


@pytest.mark.parametrize(
    "query", ["after=-1", "after=x", "after=1e3", "limit=0", "limit=10001", "limit=a"]
)
def test_a_bad_export_cursor_or_limit_is_a_400(http: TestClient, token: str, query: str) -> None:
    problem(call(http, "GET", f"/audit/export?{query}", token), 400, "bad-request")
