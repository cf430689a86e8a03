"""`POST /token-use` (issue 28): resource servers report access tokens used after their companion
was exchanged, by `jti`; the server counts each use for the owning client (`stale_access`, and
what its report-only policy would refuse), and only resource servers may report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.clock import FakeClock
from baton.core.signals import Health, Refusal, SignalKind
from baton.server.runtime.signals import flush
from baton.store.schema import client_signals, clients
from baton.store.sql import SQLStore
from tests.support import (
    RegisteredClient,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

DAY = 86_400


def report(
    http: TestClient, rs: RegisteredClient, uses: list[dict[str, Any]] | Any
) -> httpx2.Response:
    body = uses if not isinstance(uses, list) else {"uses": uses}
    return http.post("/token-use", json=body, auth=rs.basic)


def health_of(http: TestClient, store: SQLStore, client_id: str, now: int) -> Health:
    """What the app counted, flushed to the store, read back."""
    anyio.run(flush, http.app.state.baton.signals, store)  # type: ignore[attr-defined]
    (health,) = anyio.run(store.client_health, [client_id], now - DAY, now)
    return health


def schedule(store: SQLStore, client_id: str, policy: ClientPolicy) -> None:
    statement = update(clients).where(clients.c.id == client_id).values(policy=policy.stored())
    anyio.run(store.runner.write, lambda conn: conn.execute(statement))


def test_a_stale_use_is_counted_for_the_owning_client(
    server: tuple[TestClient, SQLStore, FakeClock],
) -> None:
    http, store, clock = server
    register_user(store)
    app_client = register_client(store)
    rs = register_client(store, resource_server=True)
    # A tightening to a 60-second leeway, scheduled in a week, report-only.
    start = clock.now()
    change = PolicySettings(leeway=60)
    schedule(store, app_client.id, ClientPolicy().schedule(change, start, start + 7 * DAY, True))

    old = first_pair(http, app_client)
    old_jti = introspect(http, rs, old["access_token"])["jti"]
    clock.advance(100)
    exchanged_at = clock.now()
    new = refresh(http, app_client, old["refresh_token"]).json()
    new_jti = introspect(http, rs, new["access_token"])["jti"]
    clock.advance(300)

    answer = report(
        http,
        rs,
        [
            {"jti": old_jti, "at": exchanged_at + 120, "count": 3},  # 2 minutes after: stale
            {"jti": old_jti, "at": exchanged_at + 30},  # count defaults to 1; inside 60 s
            {"jti": old_jti, "at": 0},  # before the exchange: clamped to it (delay 0)
            {"jti": "no-such-jti", "at": exchanged_at + 10, "count": 5},  # unknown: ignored
            {"jti": new_jti, "at": exchanged_at + 10},  # the newest pair's: not stale
        ],
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 3}
    assert answer.headers["cache-control"] == "no-store"

    health = health_of(http, store, app_client.id, clock.now())
    stale = health.tally(SignalKind.STALE_ACCESS)
    assert stale.count == 5 and stale.delays == {120: 3, 30: 1, 0: 1}
    assert stale.last_at == exchanged_at + 120
    # Only the uses 60 seconds or more after the exchange would be refused.
    refused = health.refusals[Refusal.LEEWAY]
    assert refused.count == 3 and refused.delays == {120: 3}
    assert health.grants_breaking == 1
    # The resource server's own health holds nothing: the uses count for the token's owner.
    (rs_health,) = anyio.run(store.client_health, [rs.id], clock.now() - DAY, clock.now())
    assert rs_health.tallies == {}


def test_uses_of_a_dead_token_and_uses_in_the_future(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, clock):
        register_user(store)
        app_client = register_client(store)
        rs = register_client(store, resource_server=True)
        old = first_pair(http, app_client)
        old_jti = introspect(http, rs, old["access_token"])["jti"]
        exchanged_at = clock.now()
        refresh(http, app_client, old["refresh_token"])
        clock.advance(100)
        future = report(http, rs, [{"jti": old_jti, "at": clock.now() + 9_999}])
        assert future.json() == {"accepted": 1}  # in the future: counted at now
        clock.advance(600)
        # After the 600 s leeway the token is dead: a use then is not counted.
        dead = report(http, rs, [{"jti": old_jti, "at": exchanged_at + 650}])
        assert dead.json() == {"accepted": 0}
        stale = health_of(http, store, app_client.id, clock.now()).tally(SignalKind.STALE_ACCESS)
        assert stale.count == 1 and stale.delays == {100: 1}
        assert stale.last_at == exchanged_at + 100


def test_only_an_authenticated_resource_server_may_report(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, _clock):
        register_user(store)
        app_client = register_client(store)
        public = register_client(store, public=True)
        rs = register_client(store, resource_server=True)
        body = {"uses": []}
        assert http.post("/token-use", json=body).status_code == 401
        wrong = http.post("/token-use", json=body, auth=(rs.id, "not-the-secret"))
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
        as_public = http.post("/token-use", json=body, auth=(public.id, ""))
        assert as_public.status_code == 401
        refused = http.post("/token-use", json=body, auth=app_client.basic)
        assert refused.status_code == 403
        assert refused.json()["error"] == "unauthorized_client"
        assert "--resource-server" in refused.json()["error_description"]
        empty = http.post("/token-use", json=body, auth=rs.basic)
        assert (empty.status_code, empty.json()) == (202, {"accepted": 0})


def test_reports_are_rate_limited_per_resource_server(tmp_path: Path) -> None:
    with running_app(tmp_path, rate_limit_client=1.0) as (http, store, _clock):
        rs = register_client(store, resource_server=True)
        answers = [report(http, rs, []).status_code for _ in range(3)]
        assert answers == [202, 202, 429]


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ([], "must be a JSON object"),
        ({"uses": {}}, "'uses' must be an array"),
        ({}, "'uses' must be an array"),
        ({"uses": [], "token": "x"}, "unknown member 'token'"),
        ({"uses": [[]]}, "uses[0] must be an object"),
        ({"uses": [{"at": 1}]}, "uses[0].jti must be a string"),
        ({"uses": [{"jti": "", "at": 1}]}, "uses[0].jti must be a string"),
        ({"uses": [{"jti": "x" * 65, "at": 1}]}, "uses[0].jti must be a string of 1 to 64"),
        ({"uses": [{"jti": 7, "at": 1}]}, "uses[0].jti"),
        ({"uses": [{"jti": "a", "at": 1}, {"jti": "b"}]}, "uses[1].at must be a Unix time"),
        ({"uses": [{"jti": "a", "at": -1}]}, "uses[0].at"),
        ({"uses": [{"jti": "a", "at": True}]}, "uses[0].at"),
        ({"uses": [{"jti": "a", "at": 1.5}]}, "uses[0].at"),
        ({"uses": [{"jti": "a", "at": "1"}]}, "uses[0].at"),
        ({"uses": [{"jti": "a", "at": 1, "count": 0}]}, "uses[0].count must be an integer"),
        ({"uses": [{"jti": "a", "at": 1, "count": 10**6 + 1}]}, "uses[0].count"),
        ({"uses": [{"jti": "a", "at": 1, "count": False}]}, "uses[0].count"),
        ({"uses": [{"jti": "a", "at": 1, "token": "at_x"}]}, "uses[0]: unknown member 'token'"),
        ({"uses": [{"jti": "a", "at": 1}] * 1001}, "at most 1000 uses"),
    ],
)
def test_a_malformed_report_is_invalid_request(tmp_path: Path, body: Any, description: str) -> None:
    with running_app(tmp_path) as (http, store, _clock):
        rs = register_client(store, resource_server=True)
        answer = http.post("/token-use", json=body, auth=rs.basic)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert description in answer.json()["error_description"]


def test_a_body_that_is_not_json_or_too_large_is_refused(tmp_path: Path) -> None:
    with running_app(tmp_path, max_body_bytes=2_000) as (http, store, _clock):
        rs = register_client(store, resource_server=True)
        form = http.post("/token-use", data={"uses": "x"}, auth=rs.basic)
        assert (form.status_code, form.json()["error"]) == (415, "invalid_request")
        headers = {"content-type": "application/json"}
        junk = http.post("/token-use", content=b"{not json", headers=headers, auth=rs.basic)
        assert junk.status_code == 400 and "not valid JSON" in junk.json()["error_description"]
        nan = http.post("/token-use", content=b'{"uses": NaN}', headers=headers, auth=rs.basic)
        assert nan.status_code == 400
        uses = [{"jti": f"j{i}", "at": 1} for i in range(200)]
        large = http.post("/token-use", json={"uses": uses}, auth=rs.basic)
        assert large.status_code == 413


def test_the_1000_uses_of_a_full_report_cost_one_read_of_tokens(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, _clock):
        rs = register_client(store, resource_server=True)
        reads: list[int] = []
        original = store.access_by_jti

        async def counted(jtis: Any, expiring_after: int | None = None) -> Any:
            reads.append(len(jtis))
            return await original(jtis, expiring_after)

        store.access_by_jti = counted  # type: ignore[method-assign]
        answer = report(http, rs, [{"jti": f"jti-{i}", "at": 1} for i in range(1000)])
        assert answer.json() == {"accepted": 0}
        assert reads == [1000]


def test_nothing_stored_holds_a_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running_app(tmp_path) as (http, store, clock):
        register_user(store)
        app_client = register_client(store)
        rs = register_client(store, resource_server=True)
        old = first_pair(http, app_client)
        jti = introspect(http, rs, old["access_token"])["jti"]
        refresh(http, app_client, old["refresh_token"])
        clock.advance(200)
        assert report(http, rs, [{"jti": jti, "at": clock.now()}]).json() == {"accepted": 1}
        anyio.run(flush, http.app.state.baton.signals, store)  # type: ignore[attr-defined]
        rows = anyio.run(
            store.inspect,
            lambda conn: [dict(r) for r in conn.execute(select(client_signals)).mappings()],
        )
    assert len(rows) == 1
    stored = json.dumps(rows)
    for secret in (old["access_token"], old["refresh_token"], jti, app_client.secret):
        assert secret not in stored
        assert secret not in caplog.text
