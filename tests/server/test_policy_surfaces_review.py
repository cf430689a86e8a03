"""The review of a client's policy through the admin API and the console (issue 28): a change the
server cannot honour is a 400 (an access-token lifetime above its `--access-ttl`); a change made
from a stale read is refused (the console form's policy version, the API's `If-Match`); an
instant past the year 9999 or a number no field can hold is a 400, never a 500; the same change
twice writes one audit row and one notice; an admin client does not set its own policy; a change
applied at once says it dropped the pending one, and the integrator is told; the console gives a
knob back to the server's default.

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

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.clock import FakeClock
from baton.store.admin import Actor
from baton.store.schema import audit_log, webhook_outbox
from baton.store.sql import SQLStore
from tests.server.test_console import admin_session, make_admin
from tests.support import (
    RegisteredClient,
    client_credentials_token,
    hidden_inputs,
    register_client,
    running_app,
)

KEK = "a key-encryption key of the policy tests, 32+ characters"
API = "/admin/api/v1"
ADMIN_SCOPES = "admin:clients:read admin:clients:write"
DAY = 86_400

App = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with running_app(tmp_path, key_encryption_key=KEK) as running:
        yield running


@pytest.fixture
def tool(app: App) -> RegisteredClient:
    return register_client(app[1], scope=ADMIN_SCOPES, name="platform tooling")


@pytest.fixture
def bearer(app: App, tool: RegisteredClient) -> dict[str, str]:
    token = client_credentials_token(app[0], tool, ADMIN_SCOPES)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def target(app: App) -> RegisteredClient:
    return register_client(app[1], name="integration")


@pytest.fixture
def console(app: App) -> TestClient:
    make_admin(app[1])
    admin_session(app[0])
    return app[0]


def audit_actions(store: SQLStore, target: str) -> list[tuple[str, dict[str, Any]]]:
    query = (
        select(audit_log.c.action, audit_log.c.detail)
        .where(audit_log.c.target_id == target)
        .order_by(audit_log.c.id)
    )
    rows = anyio.run(store.inspect, lambda conn: list(conn.execute(query).all()))
    return [(action, json.loads(detail) if detail else {}) for action, detail in rows]


def policy_audits(store: SQLStore, target: str) -> list[dict[str, Any]]:
    return [d for a, d in audit_actions(store, target) if a.endswith("_policy")]


def notices(store: SQLStore) -> list[dict[str, Any]]:
    """The policy notices in the outbox, oldest first."""
    query = (
        select(webhook_outbox.c.payload)
        .where(webhook_outbox.c.destination.is_not(None))
        .order_by(webhook_outbox.c.id)
    )
    rows = anyio.run(store.inspect, lambda conn: list(conn.execute(query).scalars()))
    return [json.loads(payload) for payload in rows]


def stored_policy(store: SQLStore, client_id: str) -> ClientPolicy:
    found = anyio.run(store.get_client, client_id)
    assert found is not None
    return found.policy


def schedule_behind(store: SQLStore, client_id: str, settings: PolicySettings, now: int) -> None:
    """Another administrator (the CLI, another console) schedules a change meanwhile."""
    found = anyio.run(store.admin().client, client_id)
    assert found is not None
    other = found.policy.schedule(settings, now, now + 14 * DAY, True)
    done = anyio.run(
        lambda: store.admin().schedule_client_policy(
            client_id, other, now, Actor("bob", None, now), before=found.policy
        )
    )
    assert done is not None and not isinstance(done, str)


def form_of(html: str) -> dict[str, str]:
    hidden = hidden_inputs(html)
    return {"csrf": hidden["csrf"], "policy_version": hidden.get("policy_version", "")}


# -- 1. the server's own policy bounds a client's ----------------------------------------------


def test_api_refuses_an_access_ttl_above_the_servers(
    app: App, bearer: dict[str, str], target: RegisteredClient
) -> None:
    http, store, _ = app
    url = f"{API}/clients/{target.id}/policy"
    answer = http.put(url, json={"settings": {"access_ttl": 7200}}, headers=bearer)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "urn:baton:problem:invalid-policy"
    assert "--access-ttl (3600 s)" in answer.json()["detail"]
    assert stored_policy(store, target.id) == ClientPolicy()
    assert http.put(url, json={"settings": {"access_ttl": 3600}}, headers=bearer).status_code == 200


def test_api_report_only_dated_now_is_a_400(
    app: App, bearer: dict[str, str], target: RegisteredClient
) -> None:
    http, _, clock = app
    body = {"settings": {"leeway": 60}, "effective_at": clock.now(), "report_only": True}
    answer = http.put(f"{API}/clients/{target.id}/policy", json=body, headers=bearer)
    assert answer.status_code == 400, answer.text
    assert "report-only change needs a date after now" in answer.json()["detail"]


def test_console_refuses_an_access_ttl_above_the_servers(
    app: App, console: TestClient, target: RegisteredClient
) -> None:
    page = console.get(f"/admin/clients/{target.id}")
    answer = console.post(
        f"/admin/clients/{target.id}/policy",
        data={**form_of(page.text), "access_ttl": "7200", "report_only": "on"},
    )
    assert answer.status_code == 400
    assert "Access_ttl must not exceed the server&#39;s --access-ttl" in answer.text
    assert stored_policy(app[1], target.id) == ClientPolicy()


# -- 2. no change made from a stale read ---------------------------------------------------------


def test_console_form_made_before_another_change_is_refused(
    app: App, console: TestClient, target: RegisteredClient
) -> None:
    _, store, clock = app
    page = console.get(f"/admin/clients/{target.id}")
    schedule_behind(store, target.id, PolicySettings(leeway=60), clock.now())
    answer = console.post(
        f"/admin/clients/{target.id}/policy",
        data={**form_of(page.text), "access_ttl": "900", "report_only": "on"},
    )
    assert answer.status_code == 409
    assert "changed since you opened this page" in answer.text
    pending = stored_policy(store, target.id).pending(clock.now())
    assert pending is not None and pending.settings == PolicySettings(leeway=60)
    # The page shown with the refusal carries the policy as it now is: sent again, it holds.
    again = console.post(
        f"/admin/clients/{target.id}/policy",
        data={**form_of(answer.text), "access_ttl": "900", "report_only": "on"},
    )
    assert again.status_code == 200, again.text
    cancel = console.post(f"/admin/clients/{target.id}/policy/cancel", data=form_of(page.text))
    assert cancel.status_code == 409


def test_api_if_match_refuses_a_stale_policy_write(
    app: App, bearer: dict[str, str], target: RegisteredClient
) -> None:
    http, store, clock = app
    url = f"{API}/clients/{target.id}/policy"
    read = http.get(url, headers=bearer)
    etag = read.headers["ETag"]
    schedule_behind(store, target.id, PolicySettings(leeway=60), clock.now())
    body = {"settings": {"access_ttl": 900}, "report_only": True}
    stale = http.put(url, json=body, headers={**bearer, "If-Match": etag})
    assert stale.status_code == 412, stale.text
    assert stale.headers["ETag"] != etag
    assert http.delete(url, headers={**bearer, "If-Match": etag}).status_code == 412
    pending = stored_policy(store, target.id).pending(clock.now())
    assert pending is not None and pending.settings == PolicySettings(leeway=60)
    fresh = http.get(url, headers=bearer).headers["ETag"]
    done = http.put(url, json=body, headers={**bearer, "If-Match": fresh})
    assert done.status_code == 200, done.text
    assert done.headers["ETag"] not in (etag, fresh)
    cancelled = http.delete(url, headers={**bearer, "If-Match": done.headers["ETag"]})
    assert cancelled.status_code == 200, cancelled.text


# -- 3. out-of-range input is a 400 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "effective_at",
    [1_099_511_627_775, 253_402_300_800, "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"],
)
def test_api_instants_past_the_year_9999_are_a_400(
    app: App, bearer: dict[str, str], target: RegisteredClient, effective_at: int | str
) -> None:
    body = {"settings": {"leeway": 60}, "effective_at": effective_at, "report_only": True}
    answer = app[0].put(f"{API}/clients/{target.id}/policy", json=body, headers=bearer)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith("effective_at: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("leeway", "\u00b2"),
        ("leeway", "\u0663"),
        ("access_ttl", "9" * 5000),
        ("effective_at", "9999-12-31T23:59"),
    ],
)
def test_console_fields_no_int_can_hold_are_a_form_error(
    app: App, console: TestClient, target: RegisteredClient, field: str, value: str
) -> None:
    page = console.get(f"/admin/clients/{target.id}")
    data = {**form_of(page.text), "report_only": "on", "leeway": "60", field: value}
    answer = console.post(f"/admin/clients/{target.id}/policy", data=data)
    assert answer.status_code in (200, 400), answer.status_code
    if field != "effective_at":
        assert answer.status_code == 400 and "whole number of seconds" in answer.text
    assert stored_policy(app[1], target.id).pending(app[2].now()) is None or field == "effective_at"


# -- 5. the same change twice --------------------------------------------------------------------


def test_the_same_put_twice_writes_one_audit_row_and_one_notice(
    app: App, bearer: dict[str, str], target: RegisteredClient
) -> None:
    http, store, clock = app
    contact = {"notify_url": "https://integrator.example/notices"}
    assert http.put(f"{API}/clients/{target.id}/contact", json=contact, headers=bearer).is_success
    body = {"settings": {"leeway": 60}, "effective_at": clock.now() + 14 * DAY, "report_only": True}
    for _ in range(3):
        answer = http.put(f"{API}/clients/{target.id}/policy", json=body, headers=bearer)
        assert answer.status_code == 200, answer.text
        clock.advance(60)
    at_once = {"settings": {"access_ttl": 900}}
    for _ in range(2):
        answer = http.put(f"{API}/clients/{target.id}/policy", json=at_once, headers=bearer)
        assert answer.status_code == 200, answer.text
        clock.advance(60)
    assert len(policy_audits(store, target.id)) == 2
    assert [n["event"] for n in notices(store)] == [
        "policy.scheduled",
        "policy.cancelled",
        "policy.scheduled",
    ]


# -- 6. not its own policy -----------------------------------------------------------------------


def test_an_admin_client_cannot_change_its_own_policy(
    app: App, bearer: dict[str, str], tool: RegisteredClient
) -> None:
    http, store, _ = app
    url = f"{API}/clients/{tool.id}/policy"
    answer = http.put(url, json={"settings": {"access_ttl": 3600}}, headers=bearer)
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"] == "urn:baton:problem:own-client"
    assert http.delete(url, headers=bearer).status_code == 409
    assert stored_policy(store, tool.id) == ClientPolicy()
    refused = [d for a, d in audit_actions(store, tool.id) if a == "client.schedule_policy"]
    assert refused == [{"refused": 409, "method": "PUT"}]


# -- 7. a change applied at once over a pending one -----------------------------------------------


def test_applying_at_once_says_it_dropped_the_pending_change(
    app: App, bearer: dict[str, str], target: RegisteredClient
) -> None:
    http, store, clock = app
    contact = {"notify_url": "https://integrator.example/notices"}
    assert http.put(f"{API}/clients/{target.id}/contact", json=contact, headers=bearer).is_success
    url = f"{API}/clients/{target.id}/policy"
    later = clock.now() + 14 * DAY
    body = {"settings": {"leeway": 60}, "effective_at": later, "report_only": True}
    assert http.put(url, json=body, headers=bearer).status_code == 200
    clock.advance(60)
    assert http.put(url, json={"settings": {"access_ttl": 900}}, headers=bearer).status_code == 200
    last = policy_audits(store, target.id)[-1]["change"]
    assert last.startswith("applied at once: access_ttl 900 s; cancelled the change scheduled")
    assert "leeway 60 s" in last
    sent = notices(store)
    assert [n["event"] for n in sent] == [
        "policy.scheduled",
        "policy.cancelled",
        "policy.scheduled",
    ]
    assert sent[1]["effective_at"] == later and sent[1]["settings"]["leeway"] == 60
    assert sent[2]["settings"]["access_ttl"] == 900 and sent[2]["effective_at"] == clock.now()


# -- 8. the console gives a knob back to the server's default --------------------------------------


def test_console_default_gives_a_knob_back_to_the_server(
    app: App, console: TestClient, target: RegisteredClient
) -> None:
    _, store, clock = app
    url = f"/admin/clients/{target.id}/policy"
    page = console.get(f"/admin/clients/{target.id}")
    done = console.post(
        url,
        data={
            **form_of(page.text),
            "access_ttl": "900",
            "leeway": "60",
            "effective_at": "2020-01-01T00:00",
        },
    )
    assert done.status_code == 200, done.text
    assert stored_policy(store, target.id).settings_at(clock.now()) == PolicySettings(
        access_ttl=900, leeway=60
    )
    reset = console.post(
        url,
        data={**form_of(done.text), "leeway": "default", "effective_at": "2020-01-01T00:00"},
    )
    assert reset.status_code == 200, reset.text
    assert stored_policy(store, target.id).settings_at(clock.now()) == PolicySettings(
        access_ttl=900
    )
