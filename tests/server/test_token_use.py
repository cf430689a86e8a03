"""`POST /token-use` (issue 28): resource servers report access tokens used after their companion
was exchanged, by the token's SHA-256 digest (base64url); the server counts each use for the
owning client (`stale_access`, and what its report-only policy would refuse), and only resource
servers may report."""

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
from baton.core.tokens import digest, digest_text
from baton.server.endpoints.token_use import MAX_COUNTED
from baton.server.runtime.signals import REPORTER_BUDGET, flush
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
# A digest of no token: well formed, unknown.
UNKNOWN = digest_text(digest("bat_at_no-such-token"))


def named(token: str) -> str:
    """How a resource server names a token in a report: its SHA-256, base64url."""
    return digest_text(digest(token))


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
    old_digest = named(old["access_token"])
    clock.advance(100)
    exchanged_at = clock.now()
    new = refresh(http, app_client, old["refresh_token"]).json()
    clock.advance(300)

    answer = report(
        http,
        rs,
        [
            {"token_digest": old_digest, "at": exchanged_at + 120, "count": 3},  # stale
            {"token_digest": old_digest, "at": exchanged_at + 30},  # count 1; inside 60 s
            {"token_digest": old_digest, "at": 0},  # before the exchange: clamped (delay 0)
            {"token_digest": UNKNOWN, "at": exchanged_at + 10, "count": 5},  # ignored
            # The newest pair's: not stale.
            {"token_digest": named(new["access_token"]), "at": exchanged_at + 10},
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
        old_digest = named(old["access_token"])
        exchanged_at = clock.now()
        refresh(http, app_client, old["refresh_token"])
        clock.advance(100)
        future = report(http, rs, [{"token_digest": old_digest, "at": clock.now() + 9_999}])
        assert future.json() == {"accepted": 1}  # in the future: counted at now
        clock.advance(600)
        # After the 600 s leeway the token is dead: a use then is not counted.
        dead = report(http, rs, [{"token_digest": old_digest, "at": exchanged_at + 650}])
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
        body: dict[str, list[object]] = {"uses": []}
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


D = UNKNOWN  # a well-formed digest
DIGEST_RULE = "uses[0].token_digest must be the SHA-256 of the access token, base64url"


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ([], "must be a JSON object"),
        ({"uses": {}}, "'uses' must be an array"),
        ({}, "'uses' must be an array"),
        ({"uses": [], "token": "x"}, "unknown member 'token'"),
        ({"uses": [[]]}, "uses[0] must be an object"),
        ({"uses": [{"at": 1}]}, DIGEST_RULE),
        ({"uses": [{"token_digest": "", "at": 1}]}, DIGEST_RULE),
        ({"uses": [{"token_digest": D[:-1], "at": 1}]}, DIGEST_RULE),  # 42 characters
        ({"uses": [{"token_digest": D + "A", "at": 1}]}, DIGEST_RULE),  # 44
        ({"uses": [{"token_digest": D[:-1] + "=", "at": 1}]}, DIGEST_RULE),  # padding
        ({"uses": [{"token_digest": "+/" + D[2:], "at": 1}]}, DIGEST_RULE),  # base64, not url
        ({"uses": [{"token_digest": D[:-1] + "B", "at": 1}]}, DIGEST_RULE),  # not canonical
        ({"uses": [{"token_digest": digest("x").hex(), "at": 1}]}, DIGEST_RULE),  # hex
        ({"uses": [{"token_digest": "é" * 43, "at": 1}]}, DIGEST_RULE),
        ({"uses": [{"token_digest": 7, "at": 1}]}, DIGEST_RULE),
        # The contract before digests: refused, never silently counted as nothing.
        ({"uses": [{"jti": "a", "at": 1}]}, "uses[0]: unknown member 'jti'"),
        ({"uses": [{"token_digest": D, "at": 1}, {"token_digest": D}]}, "uses[1].at must be"),
        ({"uses": [{"token_digest": D, "at": -1}]}, "uses[0].at"),
        ({"uses": [{"token_digest": D, "at": True}]}, "uses[0].at"),
        ({"uses": [{"token_digest": D, "at": 1.5}]}, "uses[0].at"),
        ({"uses": [{"token_digest": D, "at": "1"}]}, "uses[0].at"),
        ({"uses": [{"token_digest": D, "at": 1, "count": 0}]}, "uses[0].count must be an"),
        ({"uses": [{"token_digest": D, "at": 1, "count": 10**6 + 1}]}, "uses[0].count"),
        ({"uses": [{"token_digest": D, "at": 1, "count": False}]}, "uses[0].count"),
        (
            {"uses": [{"token_digest": D, "at": 1, "token": "at_x"}]},
            "uses[0]: unknown member 'token'",
        ),
        ({"uses": [{}] * 1001}, "at most 1000 uses"),  # counted before an entry is read
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
        uses = [{"token_digest": UNKNOWN, "at": 1} for _ in range(30)]
        large = http.post("/token-use", json={"uses": uses}, auth=rs.basic)
        assert large.status_code == 413


def test_the_1000_uses_of_a_full_report_cost_one_indexed_read_of_tokens(tmp_path: Path) -> None:
    # 1000 entries of a 43-character digest take ~90 KB: over the 64 KiB default body limit
    # (`baton.resource` sends at most 60,000 bytes), so this server takes larger bodies.
    with running_app(tmp_path, max_body_bytes=200_000) as (http, store, _clock):
        register_user(store)
        app_client = register_client(store)
        rs = register_client(store, resource_server=True)
        old = first_pair(http, app_client)
        refresh(http, app_client, old["refresh_token"])
        reads: list[int] = []
        original = store.access_by_digest

        async def counted(digests: Any) -> Any:
            reads.append(len(digests))
            return await original(digests)

        store.access_by_digest = counted  # type: ignore[method-assign]
        unknown = [digest_text(digest(f"bat_at_{i}")) for i in range(999)]
        uses = [{"token_digest": d, "at": 1} for d in [named(old["access_token"]), *unknown]]
        answer = report(http, rs, uses)
        assert answer.json() == {"accepted": 1}
        assert reads == [1000]  # PostgreSQL's plan for it: tests/store/test_query_plans.py


def test_nothing_stored_holds_a_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running_app(tmp_path) as (http, store, clock):
        register_user(store)
        app_client = register_client(store)
        rs = register_client(store, resource_server=True)
        old = first_pair(http, app_client)
        jti = str(introspect(http, rs, old["access_token"])["jti"])
        refresh(http, app_client, old["refresh_token"])
        clock.advance(200)
        reported = str(named(old["access_token"]))
        uses = [{"token_digest": reported, "at": clock.now()}]
        assert report(http, rs, uses).json() == {"accepted": 1}
        anyio.run(flush, http.app.state.baton.signals, store)  # type: ignore[attr-defined]
        rows = anyio.run(
            store.inspect,
            lambda conn: [dict(r) for r in conn.execute(select(client_signals)).mappings()],
        )
    assert len(rows) == 1
    stored = json.dumps(rows)
    # Neither the token nor anything naming it: the rows hold ids, counts and delays.
    secrets: list[str] = [old["access_token"], old["refresh_token"], jti, reported]
    secrets.append(str(app_client.secret))
    for secret in secrets:
        assert secret not in stored
        assert secret not in caplog.text


def test_a_resource_server_counts_only_tokens_issued_for_it_and_only_so_many(
    database: Path | str,
) -> None:
    """Review finding (issue 28): the revocation feed hands every resource server every
    superseded token's digest, so another API's resource server could report 10^9 stale uses
    of any client's token in one request. A token counts only for a reporter its audience
    names (one registered without a resource_uri stands for the default audience), at most
    `MAX_COUNTED` uses of one token per report."""
    with running_app(database) as (http, store, clock):
        register_user(store)
        victim = register_client(store)
        rogue = register_client(store, resource_server=True, resource_uri="https://b.api.test")
        mine = register_client(store, resource_server=True)  # the default audience's API
        old = first_pair(http, victim)
        refresh(http, victim, old["refresh_token"])
        clock.advance(5)
        feed = http.get("/revocations", auth=rogue.basic).json()
        digests = [
            digest_text(bytes.fromhex(e["token_digest"]))
            for e in feed["events"]
            if e.get("token_digest")
        ]
        assert named(old["access_token"]) in digests  # what the rogue learns from the feed
        flood = [
            {"token_digest": d, "at": clock.now() - 5 + i % 5, "count": 1_000_000}
            for d in digests
            for i in range(500)
        ]
        answer = report(http, rogue, flood)
        assert answer.status_code == 202 and answer.json() == {"accepted": 0}
        assert health_of(http, store, victim.id, clock.now()).tallies == {}

        # The API the token was issued for: its report counts, capped per token.
        answer = report(http, mine, flood)
        assert answer.status_code == 202
        stale = health_of(http, store, victim.id, clock.now()).tally(SignalKind.STALE_ACCESS)
        assert stale.count == MAX_COUNTED


def test_one_reporter_cannot_crowd_out_the_token_endpoints_signals(database: Path | str) -> None:
    """Each resource server has a budget of uses per flush interval: past it, its reports are
    answered but not counted, and the book keeps room for what the other endpoints count."""
    with running_app(database) as (http, store, clock):
        register_user(store)
        app_client = register_client(store)
        rs = register_client(store, resource_server=True)
        olds = [first_pair(http, app_client) for _ in range(3)]
        for old in olds:
            refresh(http, app_client, old["refresh_token"])
        clock.advance(5)
        book = http.app.state.baton.signals  # type: ignore[attr-defined]
        book.reported[rs.id] = REPORTER_BUDGET - 150  # what its earlier reports spent
        uses = [
            {"token_digest": named(o["access_token"]), "at": clock.now(), "count": 100}
            for o in olds
        ]
        answer = report(http, rs, uses)
        assert answer.json() == {"accepted": 2}  # 100, then 50, then nothing left
        assert book.dropped == 150
        stale = health_of(http, store, app_client.id, clock.now()).tally(SignalKind.STALE_ACCESS)
        assert stale.count == 150
        # The flush opened a new interval: the budget is whole again.
        answer = report(http, rs, uses)
        assert answer.json() == {"accepted": 3}
