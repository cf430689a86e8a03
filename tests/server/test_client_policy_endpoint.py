"""`GET /client-policy` (issue 28): what a client's own app reads to check itself before a
stricter policy takes effect. Every knob resolved over the server's options; the grant types and
PKCE from the client's registration where its policy says nothing; the scheduled change with
its date and whether it is report-only, and the change in force from that instant; an unknown,
disabled or deleted client 404 `invalid_client`; never cached; callable from the client's
browser origin; advertised in the metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from baton.core.client_policy import PolicySettings
from baton.core.clock import FakeClock
from baton.core.policy import Lifetimes, RetryPolicy
from baton.store.admin import Actor
from baton.store.base import Client
from baton.store.sql import SQLStore
from tests.support import ISSUER, RegisteredClient, register_client, running_app

LIFETIMES = Lifetimes(
    access_ttl=900, refresh_idle_ttl=30 * 86_400, refresh_absolute_ttl=90 * 86_400, leeway=120
)
Running = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture
def running(database: Path | str) -> Iterator[Running]:
    """SQLite and PostgreSQL (`database`): the policy's column is written and read on both."""
    with running_app(database, lifetimes=LIFETIMES, retry=RetryPolicy.FORK) as app:
        yield app


def policy_of(http: TestClient, client_id: str) -> dict[str, Any]:
    answer = http.get("/client-policy", params={"client_id": client_id})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    found: dict[str, Any] = answer.json()
    return found


def schedule(
    store: SQLStore,
    clock: FakeClock,
    client: RegisteredClient,
    settings: PolicySettings,
    effective_at: int | None,
    report_only: bool = False,
) -> None:
    admin = store.admin()
    now = clock.now()

    async def work() -> None:
        found = await admin.client(client.id)
        assert found is not None
        new = found.policy.schedule(settings, now, effective_at, report_only, replace_all=True)
        await admin.schedule_client_policy(client.id, new, now, Actor("test", None, now))

    anyio.run(work)


SERVER_DEFAULTS = {
    "access_ttl": 900,
    "refresh_idle_ttl": 30 * 86_400,
    "refresh_absolute_ttl": 90 * 86_400,
    "leeway": 120,
    "retry": "fork",
    "rotate": True,
}


def test_a_client_without_a_policy_reads_the_servers_options(running: Running) -> None:
    http, store, _clock = running
    confidential = register_client(store, require_pkce=False)
    assert policy_of(http, confidential.id) == {
        "client_id": confidential.id,
        "in_force": {
            **SERVER_DEFAULTS,
            "grant_types": None,  # every grant its kind allows
            "require_pkce": False,  # its registration's
            "since": None,
        },
        "scheduled": None,
    }
    public = register_client(store, public=True)
    in_force = policy_of(http, public.id)["in_force"]
    assert in_force["require_pkce"] is True and in_force["rotate"] is True


def test_a_scheduled_change_is_shown_then_in_force_from_its_instant(running: Running) -> None:
    http, store, clock = running
    client = register_client(store)
    now = clock.now()
    tighter = PolicySettings(leeway=30, retry=RetryPolicy.REPLAY, access_ttl=300)
    schedule(store, clock, client, tighter, now + 3600, report_only=True)

    before = policy_of(http, client.id)
    assert before["in_force"] == {
        **SERVER_DEFAULTS,
        "grant_types": None,
        "require_pkce": True,
        "since": None,
    }
    assert before["scheduled"] == {
        "settings": {
            **SERVER_DEFAULTS,
            "access_ttl": 300,
            "leeway": 30,
            "retry": "replay",
            "grant_types": None,
            "require_pkce": True,
        },
        "effective_at": now + 3600,
        "report_only": True,
        "scheduled_at": now,
    }

    clock.advance(3599)
    assert policy_of(http, client.id)["in_force"]["leeway"] == 120  # not a second early
    clock.advance(1)
    after = policy_of(http, client.id)
    assert after["scheduled"] is None
    assert after["in_force"] == {**before["scheduled"]["settings"], "since": now + 3600}


def test_grant_types_and_pkce_come_from_the_registration_unless_the_policy_sets_them(
    running: Running,
) -> None:
    http, store, clock = running
    client = Client(
        id="cl_registered_grants",
        name="an app registered for two grants",
        secret_digest=None,
        is_public=True,
        is_resource_server=False,
        redirect_uris=("http://127.0.0.1:9000/callback",),
        scope="read",
        created_at=0,
        grant_types=("authorization_code", "refresh_token"),
    )
    anyio.run(store.admin().register_client, client, Actor("test", None, 0))
    in_force = policy_of(http, client.id)["in_force"]
    assert in_force["grant_types"] == ["authorization_code", "refresh_token"]
    assert in_force["require_pkce"] is True

    confidential = register_client(store, require_pkce=False)
    assert policy_of(http, confidential.id)["in_force"]["require_pkce"] is False
    settings = PolicySettings(grant_types=("client_credentials",), require_pkce=True)
    schedule(store, clock, confidential, settings, clock.now())
    in_force = policy_of(http, confidential.id)["in_force"]
    assert in_force["grant_types"] == ["client_credentials"] and in_force["require_pkce"] is True
    assert in_force["since"] == clock.now()


def test_unknown_disabled_and_missing_clients_are_refused(running: Running) -> None:
    http, store, _clock = running
    client = register_client(store)
    for params in ({"client_id": "cl_nobody"}, {"client_id": "x" * 3000}, {"client_id": "a\x00"}):
        answer = http.get("/client-policy", params=params)
        assert answer.status_code == 404
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["cache-control"] == "no-store"
    missing = http.get("/client-policy")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    anyio.run(store.admin().disable_client, client.id, Actor("test", None, 0))
    answer = http.get("/client-policy", params={"client_id": client.id})
    assert answer.status_code == 404 and answer.json()["error"] == "invalid_client"


def test_the_metadata_advertises_it_and_a_browser_app_may_call_it(running: Running) -> None:
    http, store, _clock = running
    client = register_client(store)
    metadata = http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["client_policy_endpoint"] == f"{ISSUER}/client-policy"
    # The server's own defaults stay in `refresh_token_rotation`.
    assert metadata["refresh_token_rotation"] == {"retry_policy": "fork", "leeway_seconds": 120}
    origin = "http://127.0.0.1:9000"  # the client's redirect URI's origin
    answer = http.get("/client-policy", params={"client_id": client.id}, headers={"Origin": origin})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin


def test_the_sdk_reads_what_the_endpoint_answers(running: Running) -> None:
    """`baton.client.client_policy()` (the integrator's side) takes this server's answer whole."""
    from baton.client.policy import ClientPolicyInfo

    http, store, clock = running
    client = register_client(store)
    now = clock.now()
    schedule(store, clock, client, PolicySettings(leeway=60), now + 600, report_only=True)
    info = ClientPolicyInfo.from_json(policy_of(http, client.id))
    assert info.client_id == client.id and info.since is None
    assert info.scheduled is not None and info.scheduled.effective_at == now + 600
    assert info.scheduled.report_only is True
    assert info.changes() == {"leeway": (120, 60)}
