"""A client's own policy, enforced at the token endpoint, /authorize and introspection, and what
its report-only policy would refuse, noted and never enforced (issue 28).

The server runs its defaults (replay, a 600 s leeway, 1 h access tokens); each test gives one
client a policy of its own by writing `clients.policy`, as the admin store does. Each runs on
SQLite and on PostgreSQL, under a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.clock import FakeClock
from baton.core.policy import RetryPolicy
from baton.core.signals import Refusal, SignalKind, Source
from baton.core.tokens import digest
from baton.server.runtime.context import Baton
from baton.store.schema import clients, refresh_tokens
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    authorization_request,
    authorize,
    first_pair,
    introspect,
    redeem,
    refresh,
    register_client,
    register_user,
    running_app,
)

Server = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture
def server(database: Path | str) -> Iterator[Server]:
    # Signals stay in the process's book for the test to read (no flush while it runs).
    with running_app(database, signal_flush_interval=86_400) as running:
        yield running


def set_policy(store: SQLStore, client_id: str, policy: ClientPolicy) -> None:
    """Writes the client's policy as the admin store does (`clients.policy`); every process's
    cached copy of the client is re-read at its next confirmed request."""

    def work(conn: Connection) -> None:
        conn.execute(
            update(clients).where(clients.c.id == client_id).values(policy=policy.stored())
        )

    anyio.run(store.runner.write, work)


def schedule(
    store: SQLStore,
    clock: FakeClock,
    client_id: str,
    effective_at: int | None = None,
    report_only: bool = False,
    **settings: Any,
) -> None:
    """A change of the client's policy made now (in force at once without `effective_at`,
    unless report-only)."""
    now = clock.now()
    when = now if effective_at is None and not report_only else effective_at
    change = ClientPolicy().schedule(PolicySettings(**settings), now, when, report_only)
    set_policy(store, client_id, change)


def noted(
    http: TestClient,
) -> list[tuple[str, SignalKind, Refusal | None, Source, int, dict[int, int]]]:
    """What the process counted since the last look: (client, kind, reason, source, count,
    delays) rows, the way the flush writes them."""
    app: Baton = http.app.state.baton  # type: ignore[attr-defined]
    return sorted(
        (
            c.client_id,
            SignalKind(c.kind),
            Refusal(c.reason) if c.reason else None,
            Source(c.source),
            c.count,
            dict(c.delays),
        )
        for c in app.signals.drain()
    )


def fresh(http: TestClient) -> None:
    noted(http)  # forget what was counted so far


# -- a client's leeway under the server's ---------------------------------------------------------


def test_a_client_leeway_of_60_under_a_server_leeway_of_600(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    schedule(store, clock, client.id, leeway=60)
    pair = first_pair(http, client)
    clock.advance(10)
    exchanged_at = clock.now()
    assert refresh(http, client, pair["refresh_token"]).status_code == 200
    # The old access token dies 60 s after the exchange, not 600 s.
    clock.set(exchanged_at + 59)
    body = introspect(http, api, pair["access_token"])
    assert body["active"] is True and body["revocation_at"] == exchanged_at + 60
    clock.set(exchanged_at + 60)
    assert introspect(http, api, pair["access_token"]) == {"active": False}
    # A retry at +61 is past the client's leeway: reuse, and the grant is revoked.
    clock.set(exchanged_at + 61)
    retried = refresh(http, client, pair["refresh_token"])
    assert retried.status_code == 400
    assert "reuse" in retried.json()["error_description"]
    assert introspect(http, api, pair["refresh_token"]) == {"active": False}


def test_a_retry_inside_the_clients_leeway_is_replayed(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    schedule(store, clock, client.id, leeway=60)
    pair = first_pair(http, client)
    first = refresh(http, client, pair["refresh_token"])
    clock.advance(59)
    again = refresh(http, client, pair["refresh_token"])
    assert again.status_code == 200
    assert again.json()["access_token"] == first.json()["access_token"]


def test_a_client_under_strict_has_no_retry_while_others_keep_theirs(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    strict = register_client(store)
    other = register_client(store)
    schedule(store, clock, strict.id, retry=RetryPolicy.STRICT)
    mine, theirs = first_pair(http, strict), first_pair(http, other)
    for who, pair in ((strict, mine), (other, theirs)):
        assert refresh(http, who, pair["refresh_token"]).status_code == 200
    clock.advance(1)
    assert refresh(http, strict, mine["refresh_token"]).status_code == 400
    assert refresh(http, other, theirs["refresh_token"]).status_code == 200


# -- a change scheduled for an instant -------------------------------------------------------------


def test_a_scheduled_leeway_applies_to_exchanges_from_its_instant(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    start = clock.now()
    effective_at = start + 1000
    schedule(store, clock, client.id, effective_at=effective_at, leeway=60)
    # Before the instant: the old leeway (600 s).
    first = first_pair(http, client)
    second = refresh(http, client, first["refresh_token"]).json()
    assert introspect(http, api, first["access_token"])["revocation_at"] == start + 600
    # An exchange at start + 500 promises a leeway to start + 1100: running at the instant,
    # it keeps its end (its access token lives, and a retry is still honoured, after it).
    clock.set(start + 500)
    third = refresh(http, client, second["refresh_token"]).json()
    clock.set(effective_at + 50)
    body = introspect(http, api, second["access_token"])
    assert body["active"] is True and body["revocation_at"] == start + 1100
    retried = refresh(http, client, second["refresh_token"])
    assert retried.status_code == 200
    assert retried.json()["access_token"] == third["access_token"]
    clock.set(start + 1100)
    assert introspect(http, api, second["access_token"]) == {"active": False}
    # After the instant: the new leeway (60 s).
    clock.set(effective_at + 100)
    refresh(http, client, third["refresh_token"])
    assert introspect(http, api, third["access_token"])["revocation_at"] == effective_at + 160


# -- report-only -----------------------------------------------------------------------------------


def test_a_report_only_leeway_refuses_nothing_and_is_noted(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    schedule(store, clock, client.id, report_only=True, leeway=60)
    pair = first_pair(http, client)
    exchanged_at = clock.now()
    new = refresh(http, client, pair["refresh_token"]).json()
    fresh(http)
    # Two minutes on, the old access token is still honoured (the leeway in force is 600 s).
    clock.set(exchanged_at + 120)
    assert introspect(http, api, pair["access_token"])["active"] is True
    retried = refresh(http, client, pair["refresh_token"])
    assert retried.status_code == 200 and retried.json()["access_token"] == new["access_token"]
    assert noted(http) == [
        (client.id, SignalKind.LEEWAY_RETRY, None, Source.TOKEN, 1, {120: 1}),
        (client.id, SignalKind.STALE_ACCESS, None, Source.INTROSPECTION, 1, {120: 1}),
        (client.id, SignalKind.WOULD_REFUSE, Refusal.LEEWAY, Source.INTROSPECTION, 1, {120: 1}),
        (client.id, SignalKind.WOULD_REFUSE, Refusal.LEEWAY, Source.TOKEN, 1, {120: 1}),
    ]


def test_a_report_only_change_with_a_date_is_enforced_from_it(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    effective_at = clock.now() + 1000
    schedule(store, clock, client.id, effective_at=effective_at, report_only=True, leeway=60)
    pair = first_pair(http, client)
    clock.set(effective_at + 10)
    exchanged_at = clock.now()
    refresh(http, client, pair["refresh_token"])
    clock.set(exchanged_at + 60)
    assert introspect(http, api, pair["access_token"]) == {"active": False}


def test_introspection_judges_by_the_owners_report_only_policy(server: Server) -> None:
    """The resource server's own policy says nothing about the tokens it checks: the owner's
    does."""
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    schedule(store, clock, api.id, report_only=True, leeway=0, access_ttl=1)
    pair = first_pair(http, client)
    exchanged_at = clock.now()
    refresh(http, client, pair["refresh_token"])
    fresh(http)
    clock.set(exchanged_at + 30)
    assert introspect(http, api, pair["access_token"])["active"] is True
    # A stale use (after the exchange), nothing the owner's policy would refuse.
    assert noted(http) == [
        (client.id, SignalKind.STALE_ACCESS, None, Source.INTROSPECTION, 1, {30: 1})
    ]
    schedule(store, clock, client.id, report_only=True, access_ttl=10)
    http.app.state.baton.clients.forget(client.id)  # type: ignore[attr-defined]
    assert introspect(http, api, pair["access_token"])["active"] is True
    assert noted(http) == [
        (client.id, SignalKind.STALE_ACCESS, None, Source.INTROSPECTION, 1, {30: 1}),
        (client.id, SignalKind.WOULD_REFUSE, Refusal.ACCESS_TTL, Source.INTROSPECTION, 1, {30: 1}),
    ]


def test_a_refresh_after_the_access_token_expired_is_a_late_refresh(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    pair = first_pair(http, client)
    expires_at = clock.now() + 3600

    def companion_exp(conn: Connection) -> int:
        column = refresh_tokens.c.access_expires_at
        found: int = conn.execute(
            select(column).where(refresh_tokens.c.digest == digest(pair["refresh_token"]))
        ).scalar_one()
        return found

    assert anyio.run(store.inspect, companion_exp) == expires_at
    fresh(http)
    clock.set(expires_at + 45)
    assert refresh(http, client, pair["refresh_token"]).status_code == 200
    assert noted(http) == [(client.id, SignalKind.LATE_REFRESH, None, Source.TOKEN, 1, {45: 1})]


# -- refresh tokens that do not rotate -------------------------------------------------------------


def test_a_confidential_client_that_keeps_its_refresh_token(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    schedule(store, clock, client.id, rotate=False)
    pair = first_pair(http, client)
    clock.advance(1000)
    answer = refresh(http, client, pair["refresh_token"])
    assert answer.status_code == 200
    body = answer.json()
    # RFC 6749 §6: the same refresh token comes back, its idle lifetime counted from now.
    assert body["refresh_token"] == pair["refresh_token"]
    assert body["refresh_token_expires_in"] == 90 * 86_400
    assert body["access_token"] != pair["access_token"]
    # Nothing was exchanged: the old access token lives to its exp, with no announced death.
    old = introspect(http, api, pair["access_token"])
    assert old["active"] is True and "revocation_at" not in old
    described = introspect(http, api, pair["refresh_token"])
    assert described["active"] is True and described["exp"] == clock.now() + 90 * 86_400
    # Used again much later: no leeway to be past, no reuse.
    clock.advance(5000)
    again = refresh(http, client, pair["refresh_token"])
    assert again.status_code == 200 and again.json()["refresh_token"] == pair["refresh_token"]

    def rows(conn: Connection) -> int:
        return len(conn.execute(select(refresh_tokens.c.id)).all())

    assert anyio.run(store.inspect, rows) == 1


def test_a_public_clients_refresh_tokens_rotate_whatever_is_stored(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    public = register_client(store, public=True)
    # Refused by every surface (PolicySettings.check_for), but a row may say it anyway.
    schedule(store, clock, public.id, rotate=False)
    query, verifier = authorize(http, public)
    pair = redeem(http, public, query, verifier).json()
    body = refresh(http, public, pair["refresh_token"]).json()
    assert body["refresh_token"] != pair["refresh_token"]


# -- grant types and PKCE in force -----------------------------------------------------------------


def test_the_grant_types_in_force_are_the_policys(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    pair = first_pair(http, client)
    schedule(store, clock, client.id, grant_types=("authorization_code",))
    refused = refresh(http, client, pair["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    # A code redeemed under it gets no refresh token (the client could never use one).
    assert "refresh_token" not in first_pair(http, client)
    answer = http.post("/token", data={"grant_type": "client_credentials"}, auth=client.basic)
    assert answer.status_code == 400 and answer.json()["error"] == "unauthorized_client"


def test_authorize_refuses_a_grant_type_the_policy_leaves_out(server: Server) -> None:
    http, store, clock = server
    client = register_client(store)
    schedule(store, clock, client.id, grant_types=("client_credentials",))
    _verifier, params = authorization_request(client)
    answer = http.get("/authorize", params=params)
    assert answer.status_code == 302
    assert "error=unauthorized_client" in answer.headers["location"]


def test_pkce_in_force_is_the_policys(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    lax = register_client(store, require_pkce=False)
    schedule(store, clock, lax.id, require_pkce=True)
    _verifier, params = authorization_request(lax, pkce=False)
    answer = http.get("/authorize", params=params)
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(REDIRECT_URI)
    assert "error=invalid_request" in answer.headers["location"]
    strict = register_client(store, require_pkce=True)
    schedule(store, clock, strict.id, require_pkce=False)
    query, _ = authorize(http, strict, pkce=False)
    assert "code" in query


def test_report_only_grant_types_and_pkce_are_noted_not_enforced(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store, require_pkce=False)
    schedule(
        store,
        clock,
        client.id,
        report_only=True,
        grant_types=("client_credentials",),
        require_pkce=True,
    )
    query, verifier = authorize(http, client, pkce=False)
    pair = redeem(http, client, query, verifier).json()
    assert refresh(http, client, pair["refresh_token"]).status_code == 200
    found = [(kind, reason, source, count) for _id, kind, reason, source, count, _ in noted(http)]
    assert found == [
        (SignalKind.WOULD_REFUSE, Refusal.GRANT_TYPE, Source.AUTHORIZE, 1),
        (SignalKind.WOULD_REFUSE, Refusal.GRANT_TYPE, Source.TOKEN, 2),
        (SignalKind.WOULD_REFUSE, Refusal.PKCE, Source.AUTHORIZE, 1),
    ]


# -- refresh tokens issued before a policy ---------------------------------------------------------


def test_a_policy_in_force_later_caps_a_refresh_tokens_idle_lifetime(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    issued_at = clock.now()
    pair = first_pair(http, client)
    clock.advance(100)
    schedule(store, clock, client.id, refresh_idle_ttl=1000)
    clock.set(issued_at + 999)
    assert introspect(http, api, pair["refresh_token"])["active"] is True
    clock.set(issued_at + 1000)
    assert introspect(http, api, pair["refresh_token"]) == {"active": False}
    refused = refresh(http, client, pair["refresh_token"])
    assert refused.status_code == 400 and "idle" in refused.json()["error_description"]


# -- /userinfo: a use of an access token the server sees -------------------------------------------


def test_userinfo_notes_a_stale_access_token_and_the_report_only_refusal(
    database: Path | str,
) -> None:
    from tests.server.test_userinfo import KEK, OIDC_SCOPE, tokens, userinfo

    with running_app(database, key_encryption_key=KEK, signal_flush_interval=86_400) as app:
        http, store, clock = app
        register_user(store)
        client = register_client(store, scope=OIDC_SCOPE)
        schedule(store, clock, client.id, report_only=True, leeway=60)
        issued = tokens(app, client)
        exchanged_at = clock.now()
        assert refresh(http, client, issued["refresh_token"]).status_code == 200
        fresh(http)
        clock.set(exchanged_at + 90)
        assert userinfo(http, issued["access_token"]).status_code == 200
        assert noted(http) == [
            (client.id, SignalKind.STALE_ACCESS, None, Source.INTROSPECTION, 1, {90: 1}),
            (client.id, SignalKind.WOULD_REFUSE, Refusal.LEEWAY, Source.INTROSPECTION, 1, {90: 1}),
        ]
