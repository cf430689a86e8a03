"""The admin console: who may enter, what each page shows, and that every action is checked
(CSRF) and audited, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.server.admin.timeline_svg import when
from baton.store.admin import GrantQuery
from baton.store.schema import audit_log, clients
from baton.store.sql import SQLStore
from tests.support import (
    _PASSWORD_HASH,
    REDIRECT_URI,
    RegisteredClient,
    first_pair,
    hidden_inputs,
    introspect,
    refresh,
    register_client,
    sign_in,
)

LEEWAY = 600


def make_admin(store: SQLStore, username: str = "root") -> None:
    anyio.run(lambda: store.create_user(username, _PASSWORD_HASH, 0, admin=True))


def admin_session(http: TestClient, username: str = "root") -> None:
    """Signs in through /login, as the console's redirect asks."""
    page = http.get("/admin/grants")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fadmin%2Fgrants"
    signed = sign_in(http, page.headers["location"], username)
    assert signed.status_code == 303 and signed.headers["location"] == "/admin/grants"


def csrf_of(html: str) -> str:
    return hidden_inputs(html)["csrf"]


def audit_rows(store: SQLStore) -> list[dict[str, Any]]:
    def work(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
        return [dict(r) for r in rows]

    return anyio.run(store.inspect, work)


@pytest.fixture
def admin(http: TestClient, store: SQLStore, client: RegisteredClient) -> TestClient:
    make_admin(store)
    admin_session(http)
    return http


def test_only_admins_enter(http: TestClient, store: SQLStore, client: RegisteredClient) -> None:
    anonymous = http.post(f"/admin/clients/{client.id}/disable", data={"csrf": "x"})
    assert anonymous.headers["location"] == "/login?next=%2Fadmin%2F"
    # alice (from the `client` fixture) is no admin.
    page = http.get("/admin/clients")
    signed = sign_in(http, page.headers["location"], "alice")
    assert signed.headers["location"] == "/admin/clients"
    refused = http.get("/admin/clients")
    assert refused.status_code == 403
    assert "not an administrator" in refused.text
    assert "cl_" not in refused.text
    csrf = csrf_of(http.get("/logout").text)
    posted = http.post(f"/admin/clients/{client.id}/disable", data={"csrf": csrf})
    assert posted.status_code == 403
    still = http.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
    assert still.status_code == 200  # not disabled
    assert audit_rows(store) == []
    # `next` never leads off the server.
    assert http.get("/login?next=//evil.example/admin").text.count("evil") == 0


def test_a_grant_its_timeline_and_its_events(
    admin: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    http = admin
    first = first_pair(http, client)
    clock.advance(60)
    exchanged = clock.now()
    second = refresh(http, client, first["refresh_token"]).json()
    clock.advance(30)
    again = refresh(http, client, first["refresh_token"])  # a lost response, retried
    assert again.json()["access_token"] == second["access_token"]  # the same pair, replayed
    clock.advance(LEEWAY)
    assert refresh(http, client, first["refresh_token"]).status_code == 400  # reuse
    grant_id = introspect(http, resource_server, first["access_token"]).get("grant_id")
    assert grant_id is None  # dead; find the grant in the console instead

    # The browser's session is root's: root signed in and allowed the client.
    listing = http.get("/admin/grants", params={"user": "root", "status": "revoked"})
    (grant_id,) = set(re.findall(r"grt_[0-9A-Za-z_-]+", listing.text))
    assert '<span class="badge red">revoked: reuse</span>' in listing.text  # a reuse cause
    assert http.get("/admin/grants", params={"status": "active"}).text.count(grant_id) == 0
    # The client by its name, its id beside it (one lookup for the page).
    label = f'test client <span class="mono small id">{client.id}</span>'
    assert label in listing.text

    page = http.get(f"/admin/grants/{grant_id}")
    assert page.status_code == 200
    html = page.text
    assert html.count('class="bar-refresh"') == 2
    assert '<span class="badge red">revoked (reuse)</span>' in html
    assert 'class="retry"' in html and 'class="reuse"' in html and 'class="leeway"' in html
    assert "refresh_token_reuse</span>" in html and "leeway_retry</span>" in html
    assert label in html
    # The reuse's detail names its times as dates, not as Unix seconds.
    dated = f"exchanged at {when(exchanged)}, leeway ended at {when(exchanged + LEEWAY)}"
    assert dated in html and f"exchanged at {exchanged}" not in html
    # No token is ever shown, and the page needs neither script nor inline style.
    for token in (*first.values(), *second.values()):
        if isinstance(token, str) and token.startswith("bat_"):
            assert token not in html
    assert "<script" not in html and 'style="' not in html
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"

    svg = http.get(f"/admin/grants/{grant_id}/timeline.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg")

    events = http.get("/admin/events").text
    assert f'href="/admin/grants/{grant_id}#timeline"' in events
    assert events.index("refresh_token_reuse") < events.index("leeway_retry")  # newest first
    assert dated in events and f"exchanged at {exchanged}" not in events
    assert label in events
    kinds = http.get("/admin/events", params={"kind": "leeway_retry"}).text
    assert "refresh_token_reuse</span>" not in kinds


def test_revoking_a_grant_is_checked_and_audited(
    admin: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
) -> None:
    http = admin
    pair = first_pair(http, client)
    grant_id = introspect(http, resource_server, pair["access_token"])["grant_id"]
    page = http.get(f"/admin/grants/{grant_id}")
    # Without the session's CSRF token nothing happens, and nothing is recorded.
    forged = http.post(f"/admin/grants/{grant_id}/revoke", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert introspect(http, resource_server, pair["access_token"])["active"] is True
    assert audit_rows(store) == []

    done = http.post(f"/admin/grants/{grant_id}/revoke", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303
    assert introspect(http, resource_server, pair["access_token"]) == {"active": False}
    assert refresh(http, client, pair["refresh_token"]).status_code == 400
    (row,) = audit_rows(store)
    assert row["actor"] == "root" and row["action"] == "grant.revoke"
    assert row["target_kind"] == "grant" and row["target_id"] == grant_id
    assert row["source_address"] == "testclient" and row["occurred_at"] > 0
    assert grant_id in http.get("/admin/audit").text
    assert "Revoke this grant" not in http.get(f"/admin/grants/{grant_id}").text
    # Counted with the other revocations, under its own cause (once: a second click is a no-op).
    http.post(f"/admin/grants/{grant_id}/revoke", data={"csrf": csrf_of(page.text)})
    counted = http.app.state.metrics.revocations.labels("grant", "admin")  # type: ignore[attr-defined]
    assert counted._value.get() == 1


def test_clients_create_rotate_disable(admin: TestClient, store: SQLStore) -> None:
    http = admin
    page = http.get("/admin/clients")
    form = {
        "csrf": csrf_of(page.text),
        "name": "Reporting <job>",
        "redirect_uris": f"{REDIRECT_URI} https://app.example/cb",
        "scope": "read",
        "kind": "confidential",
    }
    created = http.post("/admin/clients", data=form)
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    client_id = re.search(r"cl_[0-9A-Za-z_-]+", created.text)
    secret = re.search(r'id="client-secret">([^<]+)<', created.text)
    assert client_id is not None and secret is not None
    new = RegisteredClient(client_id.group(0), secret.group(1))
    shown = new.basic[1]
    assert "Reporting &lt;job&gt;" in created.text  # escaped
    token = http.post("/token", data={"grant_type": "client_credentials"}, auth=new.basic)
    assert token.status_code == 200, token.text
    # The list never shows a secret.
    listing = http.get("/admin/clients").text
    assert new.id in listing and shown not in listing

    # Rotation: the new secret works and the old one fails at once.
    rotated = http.post(f"/admin/clients/{new.id}/rotate", data={"csrf": csrf_of(listing)})
    fresh = re.search(r'id="client-secret">([^<]+)<', rotated.text)
    assert fresh is not None and fresh.group(1) != new.secret
    assert "<dt>Name</dt><dd>Reporting &lt;job&gt;</dd>" in rotated.text  # named, not by id
    old = http.post("/token", data={"grant_type": "client_credentials"}, auth=new.basic)
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    new = RegisteredClient(new.id, fresh.group(1))
    shown = new.basic[1]
    assert http.post("/token", data={"grant_type": "client_credentials"}, auth=new.basic).is_success

    # Disabled: refused at every endpoint, and at /authorize.
    disabled = http.post(f"/admin/clients/{new.id}/disable", data={"csrf": csrf_of(listing)})
    assert disabled.status_code == 303
    for path, data in [
        ("/token", {"grant_type": "client_credentials"}),
        ("/revoke", {"token": "x"}),
        ("/introspect", {"token": "x"}),
    ]:
        answer = http.post(path, data=data, auth=new.basic)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client", path
    authz = http.get(
        "/authorize",
        params={"response_type": "code", "client_id": new.id, "redirect_uri": REDIRECT_URI},
    )
    assert authz.status_code == 400 and "unknown client" in authz.text

    rows = audit_rows(store)
    assert [r["action"] for r in rows] == [
        "client.create",
        "client.rotate_secret",
        "client.disable",
    ]
    assert {r["target_id"] for r in rows} == {new.id}
    assert json.loads(rows[0]["detail"])["name"] == "Reporting <job>"
    for row in rows:  # never a secret in the audit log
        assert shown not in json.dumps(row, default=str)
    audit_page = http.get("/admin/audit").text
    assert "client.rotate_secret" in audit_page and shown not in audit_page
    # The client is named (escaped), its id beside it, and links to its page.
    assert f'Reporting &lt;job&gt; <span class="mono small id">{new.id}</span>' in audit_page
    assert f'href="/admin/clients/{new.id}"' in audit_page


def test_a_bad_client_form_is_explained(admin: TestClient, store: SQLStore) -> None:
    csrf = csrf_of(admin.get("/admin/clients").text)
    answer = admin.post(
        "/admin/clients",
        data={"csrf": csrf, "name": "x", "redirect_uris": "http://example.com/cb"},
    )
    assert answer.status_code == 400 and "must use https" in answer.text
    assert audit_rows(store) == []

    def count(conn: Connection) -> int:
        return len(conn.execute(select(clients.c.id)).all())

    assert anyio.run(store.inspect, count) == 1  # the fixture's client only


def test_the_console_applies_the_redirect_rule_and_records_the_client_options(
    admin: TestClient, store: SQLStore
) -> None:
    """Issue 21 L4 and the per-client options: the console refuses what the CLI refuses, and a
    client made there requires PKCE unless the form opts it out."""
    csrf = csrf_of(admin.get("/admin/clients").text)
    claimed = "https://app.example/oauth2/callback"

    def create(**fields: str) -> Any:
        return admin.post("/admin/clients", data={"csrf": csrf, "name": "x", **fields})

    for fields, says in [
        ({"redirect_uris": "javascript:alert(1)//"}, "reverse-DNS form"),
        ({"redirect_uris": "data:text/html,hi"}, "reverse-DNS form"),
        ({"redirect_uris": "http://localhost:9000/cb"}, "not localhost"),
        ({"redirect_uris": claimed, "remember_consent": "on"}, "public clients only"),
        ({"redirect_uris": claimed, "kind": "public", "pkce_optional": "on"}, "PKCE cannot"),
        (
            {"redirect_uris": REDIRECT_URI, "kind": "public", "remember_consent": "on"},
            "claimed https URI",
        ),
    ]:
        answer = create(**fields)
        assert answer.status_code == 400 and says in answer.text, (fields, answer.text)
    assert audit_rows(store) == []

    def made(answer: Any) -> Any:
        assert answer.status_code == 200, answer.text
        found = re.search(r"cl_[0-9A-Za-z_-]+", answer.text)
        assert found is not None
        return anyio.run(store.get_client, found.group(0))

    default = made(create(redirect_uris=REDIRECT_URI))
    assert default.require_pkce and not default.remember_consent
    assert not made(create(redirect_uris=REDIRECT_URI, pkce_optional="on")).require_pkce
    public = made(create(redirect_uris=claimed, kind="public", remember_consent="on"))
    assert public.remember_consent and public.require_pkce


def test_a_lockout_is_a_security_event(admin: TestClient, store: SQLStore) -> None:
    for _ in range(5):
        sign_in(admin, "/login", "alice", "wrong password")
    events = admin.get("/admin/events", params={"kind": "login_lockout"}).text
    assert "login_lockout</span>" in events and "<td>alice</td>" in events
    assert "wrong password" not in events


def test_grants_are_paged_without_gaps_or_repeats(
    http: TestClient, store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    for _ in range(5):
        first_pair(http, client)
        clock.advance(1)
    admin = store.admin()
    assert admin is not None
    seen: list[str] = []
    after = None
    while True:
        page = anyio.run(admin.grants, GrantQuery(after=after, limit=2), clock.now())
        seen += [row.grant.id for row in page.rows]
        assert all(row.generations == 1 for row in page.rows)
        if page.next is None:
            break
        after = page.next
    assert len(seen) == len(set(seen)) == 5
    other = register_client(store)
    assert anyio.run(admin.grants, GrantQuery(client_id=other.id), clock.now()).rows == []


def test_clients_are_paged(admin: TestClient, store: SQLStore) -> None:
    for n in range(50):  # with the fixture's client: 51
        register_client(store, name=f"client {n}")
    first = admin.get("/admin/clients").text
    assert first.count('<tr class="disabled">') + first.count("<tr>\n    <td><a") == 50
    assert 'href="/admin/clients?page=1"' in first
    second = admin.get("/admin/clients", params={"page": "1"}).text
    assert second.count("<tr>\n    <td><a") == 1
    assert "page=2" not in second


def test_a_client_credentials_grant_is_drawn_as_its_access_token_alone(
    admin: TestClient, client: RegisteredClient
) -> None:
    issued = admin.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
    assert issued.status_code == 200
    listing = admin.get("/admin/grants", params={"client": client.id}).text
    (grant_id,) = set(re.findall(r"grt_[0-9A-Za-z_-]+", listing))
    page = admin.get(f"/admin/grants/{grant_id}").text
    assert page.count('class="bar-access"') == 1 and 'class="bar-refresh"' not in page
    assert "— (client credentials)" in page
