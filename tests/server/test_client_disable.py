"""Disabling a client is the incident response (issue 21, M3): every grant of it dies in the
disabling transaction, the revocation feed announces each, webhooks and the security events
record it; enabling it again revives nothing. Over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import anyio
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.admin import Actor, AdminStore
from baton.store.schema import grants, webhook_outbox
from baton.store.sql import SQLStore
from tests.server.test_console import admin_session, audit_rows, csrf_of, make_admin
from tests.support import REDIRECT_URI, RegisteredClient, authorize, first_pair, introspect, refresh


def outbox_revocations(store: SQLStore) -> list[dict[str, object]]:
    def work(conn: Connection) -> list[dict[str, object]]:
        rows = conn.execute(
            select(webhook_outbox.c.payload).where(webhook_outbox.c.event_type == "grant.revoked")
        ).scalars()
        return [json.loads(row) for row in rows]

    return anyio.run(store.inspect, work)


def test_disabling_a_client_kills_its_tokens_at_once(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    make_admin(store)
    admin_session(http)  # the browser's session is root's: root allows the client too
    code_pair = first_pair(http, client)
    pending_query, pending_verifier = authorize(http, client)  # a code not redeemed yet
    child = refresh(http, client, code_pair["refresh_token"]).json()
    machine = http.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
    assert machine.status_code == 200, machine.text
    machine_token = machine.json()["access_token"]
    earlier = [code_pair["access_token"], child["access_token"], child["refresh_token"]]
    grant_ids = {
        introspect(http, resource_server, t)["grant_id"] for t in [*earlier, machine_token]
    }
    assert len(grant_ids) == 2
    before = http.get("/revocations", auth=resource_server.basic).json()["watermark"]

    listing = http.get("/admin/clients")
    clock.advance(5)
    disabled = http.post(
        f"/admin/clients/{client.id}/disable", data={"csrf": csrf_of(listing.text)}
    )
    assert disabled.status_code == 303

    # Every earlier token is dead now, not at its `exp`.
    for token in [*earlier, machine_token]:
        assert introspect(http, resource_server, token) == {"active": False}
    # The feed announces each grant, effective now.
    events = http.get("/revocations", params={"since": before}, auth=resource_server.basic).json()[
        "events"
    ]
    announced = {e["grant_id"]: e for e in events if e["kind"] == "grant"}
    assert set(announced) == grant_ids
    assert {e["effective_at"] for e in announced.values()} == {clock.now()}
    # ...until the last access token of each would have expired anyway.
    assert {e["expires_at"] for e in announced.values()} == {clock.now() - 5 + 3600}
    # Webhooks, a security event and the audit row record it.
    revoked = outbox_revocations(store)
    assert {(e["grant_id"], e["reason"], e["client_id"]) for e in revoked} == {
        (g, "client_disabled", client.id) for g in grant_ids
    }
    assert "client_disabled" in [e.kind for e in anyio.run(store.security_events)]
    (row,) = [r for r in audit_rows(store) if r["action"] == "client.disable"]
    assert json.loads(row["detail"]) == {"grants_revoked": 2}
    page = http.get("/admin/events", params={"kind": "client_disabled"})
    assert page.status_code == 200 and client.id in page.text

    # Enabling it again revives nothing: the client may authenticate and start afresh.
    listing = http.get("/admin/clients")
    assert f"/admin/clients/{client.id}/enable" in listing.text
    enabled = http.post(f"/admin/clients/{client.id}/enable", data={"csrf": csrf_of(listing.text)})
    assert enabled.status_code == 303
    for token in [*earlier, machine_token]:
        assert introspect(http, resource_server, token) == {"active": False}
    again = refresh(http, client, child["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # A code issued before the disabling, still inside its minute, no longer redeems.
    pending = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": pending_query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pending_verifier or "",
        },
        auth=client.basic,
    )
    assert pending.status_code == 400 and pending.json()["error"] == "invalid_grant"
    fresh = http.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
    assert fresh.status_code == 200
    assert introspect(http, resource_server, fresh.json()["access_token"])["active"] is True
    assert [r["action"] for r in audit_rows(store)][-1] == "client.enable"
    assert len(outbox_revocations(store)) == 2  # nothing more announced


def test_a_client_with_many_grants_loses_them_all(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    tokens = []
    for _ in range(120):
        response = http.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
        assert response.status_code == 200
        tokens.append(response.json()["access_token"])
    other = first_pair(http, resource_server)["access_token"]  # another client's: untouched
    disabled = anyio.run(
        AdminStore(store.runner).disable_client, client.id, Actor("root", None, clock.now())
    )
    assert disabled is not None and disabled.grants_revoked == 120
    live = anyio.run(
        store.inspect,
        lambda conn: conn.execute(
            select(grants.c.id).where(
                grants.c.client_id == client.id, grants.c.revoked_at.is_(None)
            )
        ).all(),
    )
    assert live == []
    assert len(outbox_revocations(store)) == 120
    assert introspect(http, resource_server, tokens[0]) == {"active": False}
    assert introspect(http, resource_server, tokens[-1]) == {"active": False}
    assert introspect(http, resource_server, other)["active"] is True
    # Disabling twice does nothing more.
    again = anyio.run(
        AdminStore(store.runner).disable_client, client.id, Actor("root", None, clock.now())
    )
    assert again is None
