"""The revocation feed: what each revocation announces, the page, the stream, resuming."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.feed import advance
from baton.core.tokens import TokenKind, mint
from baton.server import feed
from baton.store.admin import Actor, AdminStore
from baton.store.sql import SQLStore
from tests.support import RegisteredClient, first_pair, introspect, refresh

LEEWAY = 600


def page(http: TestClient, rs: RegisteredClient, since: int = 0) -> dict[str, Any]:
    response = http.get("/revocations", params={"since": since}, auth=rs.basic)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def hexdigest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_rotation_announces_the_companions_death_at_the_end_of_the_leeway(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    jti = introspect(http, resource_server, pair["access_token"])["jti"]
    refresh(http, client, pair["refresh_token"])
    refresh(http, client, pair["refresh_token"])  # a replay announces nothing more
    feed = page(http, resource_server)
    (event,) = feed["events"]
    assert event["kind"] == "access_token"
    assert event["jti"] == jti
    assert event["token_digest"] == hexdigest(pair["access_token"])
    assert event["effective_at"] == clock.now() + LEEWAY  # in the future: scheduled
    assert event["expires_at"] == clock.now() + 3600
    assert feed["watermark"] == event["id"]


def test_revocations_are_announced_at_once(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    one = first_pair(http, client)
    two = first_pair(http, client)
    grant_two = introspect(http, resource_server, two["access_token"])["grant_id"]
    http.post("/revoke", data={"token": one["access_token"]}, auth=client.basic)
    http.post("/revoke", data={"token": two["refresh_token"]}, auth=client.basic)
    http.post("/revoke", data={"token": two["refresh_token"]}, auth=client.basic)  # no news
    events = page(http, resource_server)["events"]
    assert [(e["kind"], e["effective_at"]) for e in events] == [
        ("access_token", clock.now()),
        ("grant", clock.now()),
    ]
    assert events[0]["token_digest"] == hexdigest(one["access_token"])
    assert events[1]["grant_id"] == grant_two
    assert events[1]["expires_at"] == clock.now() + 3600


def test_reuse_detection_is_announced(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    refresh(http, client, pair["refresh_token"])
    clock.advance(LEEWAY)
    refresh(http, client, pair["refresh_token"])
    kinds = [e["kind"] for e in page(http, resource_server)["events"]]
    assert kinds == ["access_token", "grant"]


def test_paging_resumes_from_the_watermark(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    for _ in range(3):
        pair = first_pair(http, client)
        http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
    first = page(http, resource_server)
    assert len(first["events"]) == 3
    rest = page(http, resource_server, since=first["events"][0]["id"])
    assert [e["id"] for e in rest["events"]] == [e["id"] for e in first["events"][1:]]
    assert page(http, resource_server, since=first["watermark"])["events"] == []


def test_the_feed_is_for_resource_servers_only(http: TestClient, client: RegisteredClient) -> None:
    assert http.get("/revocations", auth=client.basic).status_code == 403
    assert http.get("/revocations").status_code == 401
    assert http.get("/revocations/stream", auth=client.basic).status_code == 403


@pytest.mark.parametrize("since", ["-1", "abc", "1" * 30])
def test_bad_cursors_are_refused(
    http: TestClient, resource_server: RegisteredClient, since: str
) -> None:
    response = http.get("/revocations", params={"since": since}, auth=resource_server.basic)
    assert response.status_code == 400


def test_the_stream_sends_the_backlog_then_resumes_after_last_event_id(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    revoked = []
    for _ in range(2):
        pair = first_pair(http, client)
        http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
        revoked.append(pair)

    def read(headers: dict[str, str], count: int) -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        with http.stream(
            "GET", "/revocations/stream", auth=resource_server.basic, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            message: dict[str, str] = {}
            for line in response.iter_lines():
                if line == "":
                    if "data" in message:
                        got.append((message["id"], json.loads(message["data"])))
                    message = {}
                    if len(got) == count:
                        break
                    continue
                name, _, value = line.partition(": ")
                message[name] = value
        return got

    both = read({}, 2)
    assert [body["kind"] for _, body in both] == ["grant", "grant"]
    last_id = both[0][0]
    assert int(last_id) == both[0][1]["id"]
    third = first_pair(http, client)
    http.post("/revoke", data={"token": third["refresh_token"]}, auth=client.basic)
    resumed = read({"Last-Event-ID": last_id}, 2)
    assert [body["id"] for _, body in resumed] == [both[1][1]["id"], both[1][1]["id"] + 1]


@pytest.mark.parametrize("change", ["disabled", "secret rotated"])
def test_a_stream_ends_once_its_resource_server_may_no_longer_read_the_feed(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    """A stream is authenticated once, when it opens; a resource server disabled or given a new
    secret afterwards (here through the admin store, as another process or the CLI would) must
    not keep reading revocations on it. Checked on every wake-up here; every second by default."""
    monkeypatch.setattr(feed, "RECONFIRM_SECONDS", 0.0)
    admin = AdminStore(store.runner)
    actor = Actor("admin", None, 0)
    before = first_pair(http, client)
    http.post("/revoke", data={"token": before["refresh_token"]}, auth=client.basic)

    kinds: list[str] = []
    with http.stream("GET", "/revocations/stream", auth=resource_server.basic) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                kinds.append(json.loads(line.removeprefix("data: "))["kind"])
                break
        if change == "disabled":
            assert anyio.run(admin.disable_client, resource_server.id, actor)
        else:
            new_secret = mint(TokenKind.CLIENT_SECRET)
            assert anyio.run(admin.rotate_secret, resource_server.id, new_secret.digest, actor)
        after = first_pair(http, client)
        http.post("/revoke", data={"token": after["refresh_token"]}, auth=client.basic)
        rest = list(lines)  # ends: the server closed the stream
    assert kinds == ["grant"]
    assert not [line for line in rest if line.startswith("data: ")]
    again = http.get("/revocations/stream", auth=resource_server.basic)
    assert again.status_code == 401


def test_the_watermark_waits_at_a_gap_until_it_is_settled() -> None:
    now = 1000
    assert advance(0, [(1, now), (2, now)], now) == 2
    assert advance(0, [(1, now), (3, now)], now) == 1  # id 2 may still commit
    assert advance(0, [(1, now), (3, now - 5)], now) == 3  # ...or it is gone for good
    assert advance(4, [], now) == 4
