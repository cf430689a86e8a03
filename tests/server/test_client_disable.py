"""Disabling a client is the incident response (issue 21, M3): every grant of it dies in the
disabling transaction, the revocation feed announces each, webhooks and the security events
record it; enabling it again revives nothing. Over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
import asyncpg
import pytest
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.pairs import MintedPair
from baton.core.rules import CodeRedemption
from baton.core.tokens import TokenKind, mint
from baton.store.admin import Actor
from baton.store.base import ClientDisabled, CodeRefused, NewCode
from baton.store.schema import grants, webhook_outbox
from baton.store.sql import SQLStore
from tests.databases import empty_tables, plain_url
from tests.server.test_console import admin_session, audit_rows, csrf_of, make_admin
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorization_request,
    authorize,
    first_pair,
    introspect,
    migrated_store,
    refresh,
    register_client,
)


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
    # And every user is asked again before the client gets anything (as after an
    # administrator's revocation of one grant).
    root = anyio.run(store.get_user, "root")
    assert root is not None and anyio.run(store.consent, root.id, client.id) is None
    _verifier, params = authorization_request(client)
    page = http.get("/authorize", params=params)
    assert page.status_code == 200 and 'name="decision"' in page.text  # the consent page


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
    disabled = anyio.run(store.admin().disable_client, client.id, Actor("root", None, clock.now()))
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
    again = anyio.run(store.admin().disable_client, client.id, Actor("root", None, clock.now()))
    assert again is None


def test_a_request_authenticated_before_the_disable_gets_no_grant_after_it(
    store: SQLStore, client: RegisteredClient, clock: FakeClock
) -> None:
    # A request authenticated the client on a read made just before an administrator disabled
    # it; its store call comes after the disabling committed, which revoked every grant it
    # could see. That call must not add a grant the disabling never saw.
    code = mint(TokenKind.CODE)
    user = anyio.run(store.get_user, "alice")
    assert user is not None
    now = clock.now()
    saved = NewCode(code.digest, client.id, user.id, None, "", None, now, now + 60)
    anyio.run(store.save_code, saved)
    admin = store.admin()
    assert anyio.run(admin.disable_client, client.id, Actor("root", None, now)) is not None
    with pytest.raises(ClientDisabled):
        anyio.run(
            store.issue_client_credentials, client.id, "", MintedPair.new(with_refresh=False), now
        )
    ask = CodeRedemption(client.id, None, None)
    redeemed = anyio.run(store.redeem_code, code.digest, ask, MintedPair.new(), now, None)
    assert isinstance(redeemed, CodeRefused)  # the disabling ended the code
    assert anyio.run(store.inspect, client_grants(client.id)) == []


def client_grants(client_id: str) -> Callable[[Connection], list[str]]:
    def work(conn: Connection) -> list[str]:
        found = conn.execute(select(grants.c.id).where(grants.c.client_id == client_id))
        return list(found.scalars())

    return work


def test_on_postgresql_a_new_grant_waits_for_a_disable_in_flight(postgres_database: str) -> None:
    # PostgreSQL, READ COMMITTED: the disabling transaction has updated the client's row (and
    # ended its codes) but not committed yet. A code redemption that read its code before, and
    # a client_credentials grant, must wait for it and then be refused; without the wait they
    # would create grants the disabling's revocation never saw.
    empty_tables(postgres_database)
    clock = FakeClock()
    now = clock.now()
    store = migrated_store(postgres_database)
    registered = register_client(store)
    user = anyio.run(lambda: store.create_user("bob", "x", now))
    code = mint(TokenKind.CODE)
    anyio.run(
        store.save_code, NewCode(code.digest, registered.id, user.id, None, "", None, now, now + 60)
    )
    outcome: list[str] = []

    async def scenario() -> None:
        holder = await asyncpg.connect(plain_url(postgres_database))
        try:
            held = holder.transaction()
            await held.start()
            await holder.execute(
                "UPDATE clients SET disabled_at = $1 WHERE id = $2", now, registered.id
            )

            async def issue() -> None:
                try:
                    await store.issue_client_credentials(
                        registered.id, "", MintedPair.new(with_refresh=False), now
                    )
                    outcome.append("issued")
                except ClientDisabled:
                    outcome.append("refused")

            async def redeem() -> None:
                ask = CodeRedemption(registered.id, None, None)
                try:
                    result = await store.redeem_code(code.digest, ask, MintedPair.new(), now, None)
                    outcome.append(type(result).__name__)
                except ClientDisabled:
                    outcome.append("refused")

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(issue)
                tasks.start_soon(redeem)
                await anyio.sleep(0.5)
                assert outcome == []  # both wait for the disabling transaction
                await held.commit()
        finally:
            await holder.close()

    anyio.run(scenario)
    assert outcome == ["refused", "refused"]
    assert anyio.run(store.inspect, client_grants(registered.id)) == []
    anyio.run(store.close)
