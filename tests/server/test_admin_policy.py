"""A client's policy through the admin API (issue 28): scheduled for a date, report-only until
then, in force from that instant (and not before) for the client's own app to read, cancelled;
whom a change is told to; a signed notice of each change delivered to the integrator's
notify URL on loopback, verifiable with the server's JWKS, whether or not a webhook is
configured; the client's integration health. Every write is audited; bad input is a 400 problem
naming what is wrong, never a 500.

In-process on SQLite under a fake clock, with a key-encryption key (so signing keys)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from baton.core.client_policy import PolicySettings
from baton.core.clock import FakeClock
from baton.store.admin import Actor
from baton.store.base import Client, SignalCount
from baton.store.schema import audit_log, webhook_outbox
from baton.store.sql import SQLStore
from baton.store.sql.client_admin import STALE
from tests.server.logout_support import verified_logout_token, wait_for
from tests.support import (
    ISSUER,
    client_credentials_token,
    register_client,
    running_app,
)
from tests.webhook_receiver import Receiver, receiver

__all__ = ["receiver"]  # a fixture

KEK = "a key-encryption key of the policy tests, 32+ characters"
API = "/admin/api/v1"
ADMIN_SCOPES = "admin:clients:read admin:clients:write"
DAY = 86_400
STALE_USE = "stale_access"


@pytest.fixture
def app(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    # No webhook URL: the notices go out all the same, as back-channel logouts do. The
    # receiver is plain http on loopback: allowed only as on a development server.
    with running_app(
        tmp_path,
        key_encryption_key=KEK,
        webhook_poll_interval=0.02,
        webhook_backoff_base=1,
        client_documents_allow_private=True,
    ) as running:
        yield running


@pytest.fixture
def bearer(app: tuple[TestClient, SQLStore, FakeClock]) -> dict[str, str]:
    http, store, _clock = app
    admin = register_client(store, scope=ADMIN_SCOPES, name="platform tooling")
    return {"Authorization": f"Bearer {client_credentials_token(http, admin, ADMIN_SCOPES)}"}


def audit_actions(store: SQLStore, target: str) -> list[tuple[str, dict[str, Any]]]:
    query = (
        select(audit_log.c.action, audit_log.c.detail)
        .where(audit_log.c.target_id == target)
        .order_by(audit_log.c.id)
    )
    rows = anyio.run(store.inspect, lambda conn: list(conn.execute(query).all()))
    return [(action, json.loads(detail) if detail else {}) for action, detail in rows]


def problem(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail: str = answer.json()["detail"]
    return detail


def test_a_report_only_change_is_scheduled_shown_takes_effect_at_its_instant(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str]
) -> None:
    http, store, clock = app
    client = register_client(store)
    now = clock.now()
    path = f"{API}/clients/{client.id}/policy"
    body = {
        "settings": {"leeway": 60, "retry": "strict"},
        "effective_at": now + 7 * DAY,
        "report_only": True,
    }
    answer = http.put(path, json=body, headers=bearer)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    shown = answer.json()
    # Resolved over the server's defaults (replay, a 600 s leeway): nothing changed yet.
    assert shown["in_force"]["retry"] == "replay" and shown["in_force"]["leeway"] == 600
    assert shown["in_force"]["since"] is None
    scheduled = shown["scheduled"]
    assert scheduled["effective_at"] == now + 7 * DAY and scheduled["report_only"] is True
    assert scheduled["settings"]["retry"] == "strict"
    assert scheduled["settings"]["leeway"] == 0  # strict: no leeway, whatever is set
    assert shown["own"]["scheduled"]["settings"] == {"leeway": 60, "retry": "strict"}
    assert http.get(path, headers=bearer).json() == shown

    # What the client's own app reads says the same, with no admin token.
    public = http.get("/client-policy", params={"client_id": client.id}).json()
    assert public["scheduled"] == scheduled and public["in_force"] == shown["in_force"]

    clock.advance(7 * DAY)  # the admin token is long dead: the client's app reads it
    after = http.get("/client-policy", params={"client_id": client.id}).json()
    assert after["scheduled"] is None
    assert after["in_force"]["retry"] == "strict" and after["in_force"]["since"] == now + 7 * DAY

    actions = audit_actions(store, client.id)
    (action, detail) = actions[-1]
    assert action == "client.schedule_policy"
    assert detail["change"].startswith("scheduled leeway 60 s, retry strict from ")
    assert detail["change"].endswith("report-only until then")


def test_a_pending_change_is_cancelled_and_a_second_cancel_is_a_conflict(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str]
) -> None:
    http, store, clock = app
    client = register_client(store)
    path = f"{API}/clients/{client.id}/policy"
    body = {"settings": {"access_ttl": 300}, "effective_at": "+2h"}
    scheduled = http.put(path, json=body, headers=bearer).json()["scheduled"]
    assert scheduled["effective_at"] == clock.now() + 7200
    assert scheduled["settings"]["access_ttl"] == 300
    cancelled = http.delete(path, headers=bearer)
    assert cancelled.status_code == 200 and cancelled.json()["scheduled"] is None
    assert "no policy change scheduled" in problem(http.delete(path, headers=bearer), 409)
    assert [a for a, _ in audit_actions(store, client.id)] == [
        "client.schedule_policy",
        "client.cancel_policy",
    ]


def test_a_change_without_a_date_applies_at_once(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str]
) -> None:
    http, store, clock = app
    client = register_client(store)
    body = {"settings": {"grant_types": ["client_credentials"], "access_ttl": 120}}
    shown = http.put(f"{API}/clients/{client.id}/policy", json=body, headers=bearer).json()
    assert shown["in_force"]["since"] == clock.now() and shown["scheduled"] is None
    assert shown["in_force"]["grant_types"] == ["client_credentials"]
    assert shown["in_force"]["access_ttl"] == 120
    assert shown["own"]["in_force"] == {
        "settings": {"grant_types": ["client_credentials"], "access_ttl": 120},
        "since": clock.now(),
    }
    # The token endpoint follows it from this instant: the client's lifetime, its grant types.
    token = http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "read"}, auth=client.basic
    )
    assert token.status_code == 200, token.text
    assert token.json()["expires_in"] == 120


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"settings": {"leeway": -1}}, "leeway must be between"),
        ({"settings": {"retry": "sometimes"}}, "retry must be one of"),
        ({"settings": {"colour": "blue"}}, "unknown policy setting 'colour'"),
        ({"settings": {"rotate": "no"}}, "rotate must be true or false"),
        ({"settings": {}, "effective_at": "next tuesday"}, "effective_at"),
        ({"settings": {}, "effective_at": 1.5}, "effective_at must be"),
        ({"settings": {}, "report_only": "yes"}, "report_only must be true or false"),
        ({"settings": {}, "when": 1}, "unknown field"),
        ({"settings": []}, "a policy is a JSON object"),
    ],
)
def test_a_bad_policy_body_is_a_400_naming_the_problem(
    app: tuple[TestClient, SQLStore, FakeClock],
    bearer: dict[str, str],
    body: dict[str, Any],
    fragment: str,
) -> None:
    http, store, _clock = app
    client = register_client(store)
    answer = http.put(f"{API}/clients/{client.id}/policy", json=body, headers=bearer)
    assert fragment in problem(answer, 400)
    assert audit_actions(store, client.id) == []


def test_a_public_client_always_rotates_and_unknown_clients_are_404(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str]
) -> None:
    http, store, _clock = app
    public = register_client(store, public=True)
    answer = http.put(
        f"{API}/clients/{public.id}/policy", json={"settings": {"rotate": False}}, headers=bearer
    )
    assert "always rotate" in problem(answer, 400)
    assert problem(http.get(f"{API}/clients/cl_nobody/policy", headers=bearer), 404)
    assert problem(http.put(f"{API}/clients/cl_nobody/policy", json={}, headers=bearer), 404)
    # Without admin:clients:write a change is refused.
    assert http.put(f"{API}/clients/{public.id}/policy", json={}).status_code == 401


def test_a_contact_is_checked_and_each_change_is_told_to_the_notify_url_signed(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str], receiver: Receiver
) -> None:
    http, store, clock = app
    client = register_client(store)
    contact = f"{API}/clients/{client.id}/contact"
    bad = http.put(contact, json={"contacts": ["nobody"]}, headers=bearer)
    assert "not an email address" in problem(bad, 400)
    bad = http.put(contact, json={"notify_url": "http://integrator.example/n"}, headers=bearer)
    assert "must use https" in problem(bad, 400)
    answer = http.put(
        contact,
        json={"contacts": ["dev@integrator.example"], "notify_url": receiver.url},
        headers=bearer,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "client_id": client.id,
        "contacts": ["dev@integrator.example"],
        "notify_url": receiver.url,
    }

    now = clock.now()
    body = {"settings": {"leeway": 60}, "effective_at": now + DAY, "report_only": True}
    assert http.put(f"{API}/clients/{client.id}/policy", json=body, headers=bearer).is_success
    wait_for(lambda: len(receiver.received) == 1, 5.0)
    assert http.delete(f"{API}/clients/{client.id}/policy", headers=bearer).is_success
    wait_for(lambda: len(receiver.received) == 2, 5.0)

    notices = []
    for received in receiver.received:
        assert received.headers["Content-Type"] == "application/jwt"
        header, claims = verified_logout_token(http, received.body.decode())
        assert header["typ"] == "baton-policy-notice+jwt"
        notices.append(claims)
    scheduled, cancelled = notices
    assert scheduled["event"] == "policy.scheduled" and cancelled["event"] == "policy.cancelled"
    for claims in notices:
        assert claims["iss"] == ISSUER
        assert claims["aud"] == claims["client_id"] == client.id
        assert claims["iat"] == now and 0 < claims["exp"] - now <= 300
        assert claims["effective_at"] == now + DAY and claims["report_only"] is True
        # Resolved as /client-policy shows it: the leeway set, the server's other defaults.
        assert claims["settings"]["leeway"] == 60 and claims["settings"]["retry"] == "replay"
        assert claims["settings"]["access_ttl"] == 3600
    assert scheduled["jti"] != cancelled["jti"]

    def rows() -> list[Any]:
        query = select(webhook_outbox).order_by(webhook_outbox.c.id)
        return anyio.run(store.inspect, lambda conn: list(conn.execute(query).mappings().all()))

    wait_for(lambda: all(r["delivered_at"] is not None for r in rows()), 5.0)
    # Signed at delivery: the outbox rows hold the claims, never a signed notice.
    for row, received in zip(rows(), receiver.received, strict=True):
        assert received.body.decode() not in row["payload"]


def test_a_failed_notice_is_retried(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str], receiver: Receiver
) -> None:
    http, store, clock = app
    receiver.fail_first = 1
    client = register_client(store)
    http.put(
        f"{API}/clients/{client.id}/contact", json={"notify_url": receiver.url}, headers=bearer
    )
    body = {"settings": {"access_ttl": 600}, "effective_at": "+7d"}
    assert http.put(f"{API}/clients/{client.id}/policy", json=body, headers=bearer).is_success
    wait_for(lambda: receiver.answered == 1, 5.0)

    def failed_once() -> bool:
        query = select(webhook_outbox.c.last_error)
        found = anyio.run(store.inspect, lambda conn: conn.execute(query).scalars().all())
        return bool(found) and found[0] is not None

    wait_for(failed_once, 5.0)
    clock.advance(2)  # past the backoff
    wait_for(lambda: len(receiver.received) == 1, 5.0)
    _header, claims = verified_logout_token(http, receiver.received[0].body.decode())
    assert claims["event"] == "policy.scheduled" and claims["settings"]["access_ttl"] == 600


def test_health_is_the_clients_signals_over_the_window(
    app: tuple[TestClient, SQLStore, FakeClock], bearer: dict[str, str]
) -> None:
    http, store, clock = app
    client = register_client(store)
    other = register_client(store)
    now = clock.now()
    stale = [
        # Stale access-token uses after rotation, reported by a resource server: 30 s and
        # 90 s after their exchange, three times each.
        SignalCount(client.id, STALE_USE, None, "resource", "g1", now - 60, now - 10, 3, {30: 3}),
        SignalCount(client.id, STALE_USE, None, "resource", "g2", now - 50, now - 5, 3, {90: 3}),
        # Eight days ago: out of a 7-day window.
        SignalCount(client.id, "reuse", None, "token", "g3", now - 8 * DAY, now - 8 * DAY, 1),
        SignalCount(other.id, STALE_USE, None, "resource", "g9", now - 5, now - 5, 7),
    ]  # fmt: skip
    anyio.run(store.record_signals, stale)

    assert "since" in problem(
        http.get(f"{API}/clients/{client.id}/health?since=soon", headers=bearer), 400
    )
    assert problem(http.get(f"{API}/clients/cl_nobody/health", headers=bearer), 404)
    answer = http.get(f"{API}/clients/{client.id}/health?since=7d", headers=bearer)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    health = answer.json()
    assert health["client_id"] == client.id and health["since"] == now - 7 * DAY
    assert health["stale_access"]["count"] == 6, health
    assert health["stale_access"]["last_seen"] == now - 5
    assert health["stale_access"]["p50_delay_seconds"] == 30, health
    assert health["stale_access"]["p95_delay_seconds"] == 90, health
    assert health["reuse"]["count"] == 0  # before the window
    wider = http.get(f"{API}/clients/{client.id}/health?since=9d", headers=bearer).json()
    assert wider["reuse"]["count"] == 1
    quiet = register_client(store)
    empty = http.get(f"{API}/clients/{quiet.id}/health", headers=bearer).json()
    assert empty["client_id"] == quiet.id and empty["stale_access"]["count"] == 0


def test_a_change_made_from_a_stale_read_writes_nothing(
    app: tuple[TestClient, SQLStore, FakeClock],
) -> None:
    """Two administrators who read the same policy cannot both write their change of it: the
    second finds its `before` stale (the API answers 409, the CLI says to run again)."""
    _http, store, clock = app
    client = register_client(store)
    admin, now = store.admin(), clock.now()
    actor = Actor("test", None, now)

    async def race() -> tuple[Any, Any]:
        read = await admin.client(client.id)
        assert read is not None
        first = read.policy.schedule(PolicySettings(leeway=60), now, now + DAY, True)
        second = read.policy.schedule(PolicySettings(leeway=30), now, now + DAY, True)
        done = await admin.schedule_client_policy(client.id, first, now, actor, before=read.policy)
        late = await admin.schedule_client_policy(client.id, second, now, actor, before=read.policy)
        return done, late

    done, late = anyio.run(race)
    assert isinstance(done, Client) and late is STALE
    assert [a for a, _ in audit_actions(store, client.id)] == ["client.schedule_policy"]
    shown = anyio.run(admin.client, client.id)
    assert shown is not None and shown.policy == done.policy
