"""Webhooks: written with the event, signed, retried with backoff after a receiver fails,
delivered at least once by racing processes; a real receiver on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, select

from baton.core.clock import FakeClock
from baton.core.vocabulary import RevocationCause, WebhookEventType
from baton.server.observability.delivery import WebhookOptions, WebhookSender, backoff
from baton.server.observability.metrics import Metrics
from baton.store.base import NEVER
from baton.store.schema import webhook_outbox
from baton.store.sql import SQLStore, outbox
from baton.webhooks import InvalidSignature, sign, verify
from tests.secrets_scan import find_secrets
from tests.support import (
    REDIRECT_URI,
    authorize,
    first_pair,
    migrated_store,
    refresh,
    register_client,
    register_user,
    running_app,
)
from tests.webhook_receiver import SECRET, Receiver, receiver

__all__ = ["receiver"]  # a fixture


def signing_clock(receiver: Receiver) -> FakeClock:
    """The senders' fake clock, which the receiver also reads to check signatures' ages."""
    clock = FakeClock()
    receiver.clock = clock
    return clock


def store_for(database: Path | str) -> SQLStore:
    return migrated_store(database if isinstance(database, str) else database / "baton.db")


def options(url: str, **overrides: Any) -> WebhookOptions:
    return WebhookOptions(url=url, secret=SECRET, **overrides)


def enqueue(store: SQLStore, n: int, now: int) -> None:
    def work(conn: Connection) -> None:
        for i in range(n):
            fields = {"grant_id": f"grt_{i}", "reason": RevocationCause.ADMIN}
            outbox.enqueue(conn, WebhookEventType.GRANT_REVOKED, fields, now)

    anyio.run(store.runner.write, work)


def rows(store: SQLStore) -> list[Any]:
    def work(conn: Connection) -> list[Any]:
        return list(conn.execute(select(webhook_outbox).order_by(webhook_outbox.c.id)).all())

    return anyio.run(store.inspect, work)


# -- the receiver's helper ------------------------------------------------------------------------


def test_verify_accepts_the_signed_body_and_refuses_anything_else() -> None:
    body = b'{"id":"evt_1","type":"grant.revoked"}'
    headers = {"Baton-Signature": sign(SECRET, body, 1_000)}
    assert verify(SECRET, headers, body, now=1_100)["id"] == "evt_1"
    assert verify(SECRET.encode(), {"baton-signature": headers["Baton-Signature"]}, body, now=1000)
    rotated = {"Baton-Signature": f"t=1000,v1={'0' * 64},{sign(SECRET, body, 1000)[7:]}"}
    assert verify(SECRET, rotated, body, now=1_000)  # any one v1 may match (secret rotation)
    refusals = [
        (SECRET, headers, body.replace(b"evt_1", b"evt_2"), 1_000),  # tampered body
        ("another-secret-entirely", headers, body, 1_000),
        (SECRET, headers, body, 1_301),  # too old for the default 300 s tolerance
        (SECRET, headers, body, 699),  # from the future
        (SECRET, {}, body, 1_000),
        (SECRET, {"Baton-Signature": "v1=abc"}, body, 1_000),
        (SECRET, {"Baton-Signature": "t=1000"}, body, 1_000),
    ]
    for secret, given, payload, now in refusals:
        with pytest.raises(InvalidSignature):
            verify(secret, given, payload, now=now)


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    settings = options("http://unused", backoff_base=4, backoff_cap=60)
    bounds = {1: (2, 4), 2: (4, 8), 3: (8, 16), 5: (30, 60), 40: (30, 60)}
    for attempts, (low, high) in bounds.items():
        delays = {backoff(settings, attempts) for _ in range(200)}
        assert low <= min(delays) and max(delays) <= high, (attempts, delays)
        assert len(delays) > 1  # jittered


# -- the outbox is written with the event ---------------------------------------------------------


def test_each_reuse_and_grant_revocation_writes_its_event_with_no_token(
    database: Path | str,
) -> None:
    with running_app(database) as (http, store, clock):
        register_user(store)
        client = register_client(store)
        # A refresh token replayed after its leeway.
        pair = first_pair(http, client)
        assert refresh(http, client, pair["refresh_token"]).status_code == 200
        clock.advance(601)
        assert refresh(http, client, pair["refresh_token"]).status_code == 400
        grant_id = json.loads(rows(store)[0].payload)["grant_id"]
        # An admin (`baton grants revoke`) revoking it again changes nothing: no event.
        assert anyio.run(store.revoke_grant, grant_id, clock.now(), RevocationCause.ADMIN) is False
        # RFC 7009: an access token alone is no grant revocation; a refresh token is.
        second = first_pair(http, client)
        for token in (second["access_token"], second["refresh_token"]):
            assert http.post("/revoke", data={"token": token}, auth=client.basic).status_code == 200
        # An authorization code redeemed twice.
        query, verifier = authorize(http, client)
        redemption = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            **client.auth_params(),
        }
        assert http.post("/token", data=redemption).status_code == 200
        assert http.post("/token", data=redemption).status_code == 400
        # An admin revoking a live grant.
        third = first_pair(http, client)
        assert (
            anyio.run(store.revoke_grant, _grant_of(store), clock.now(), RevocationCause.ADMIN)
            is True
        )
        found = rows(store)
    events = [json.loads(row.payload) for row in found]
    assert [(e["type"], e.get("reason") or e.get("kind")) for e in events] == [
        ("grant.revoked", "reuse"),
        ("reuse_detected", "refresh_token_reuse"),
        ("grant.revoked", "revoked"),
        ("grant.revoked", "code_reuse"),
        ("reuse_detected", "code_reuse"),
        ("grant.revoked", "admin"),
    ]
    reuse = events[1]
    assert reuse["grant_id"] == grant_id and reuse["subject"] == "alice"
    assert reuse["client_id"] == client.id and reuse["generation"] == 0
    assert events[0]["grant_id"] == grant_id and events[0]["subject"] == "alice"
    assert len({e["id"] for e in events}) == len(events)
    assert all(row.delivered_at is None and row.attempts == 0 for row in found)
    text = "\n".join(row.payload for row in found)
    assert not find_secrets(text)
    for token in (pair, second, third):
        assert token["refresh_token"] not in text and token["access_token"] not in text
    assert query["code"][0] not in text


def _grant_of(store: SQLStore) -> str:
    """The one live grant."""
    grants = anyio.run(store.list_grants)
    (live,) = [g.grant.id for g in grants if g.grant.revoked_at is None]
    return live


def test_the_purge_deletes_outbox_rows_older_than_the_retention(database: Path | str) -> None:
    store, clock = store_for(database), FakeClock()
    enqueue(store, 3, clock.now())
    clock.advance(100)
    enqueue(store, 2, clock.now())
    assert anyio.run(store.purge, clock.now() + 50, 100) >= 3
    assert [json.loads(row.payload)["grant_id"] for row in rows(store)] == ["grt_0", "grt_1"]
    anyio.run(store.close)


# -- delivery -------------------------------------------------------------------------------------


def test_a_failing_receiver_gets_retries_with_backoff_then_the_event(
    database: Path | str, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    store, clock, metrics = store_for(database), signing_clock(receiver), Metrics()
    enqueue(store, 1, clock.now())
    sender = WebhookSender(options(receiver.url, backoff_base=10), store, clock, metrics)

    async def scenario() -> list[tuple[int, int, int | None]]:
        seen = []
        try:
            for _ in range(3):
                assert await sender.deliver_due() == 1
                (row,) = await store.inspect(lambda c: c.execute(select(webhook_outbox)).all())
                seen.append((row.attempts, row.next_attempt_at - clock.now(), row.delivered_at))
                # Not due again before its backoff has passed.
                assert await sender.deliver_due() == 0
                if row.delivered_at is None:
                    clock.advance(row.next_attempt_at - clock.now())
        finally:
            await sender.close()
        return seen

    seen = anyio.run(scenario)
    (first_wait_attempts, first_wait, _), (_, second_wait, _), (attempts, _, delivered) = seen
    assert first_wait_attempts == 1 and 5 <= first_wait <= 10  # base 10, jittered
    assert 10 <= second_wait <= 20  # doubled
    assert attempts == 3 and delivered is not None
    assert receiver.answered == 3 and len(receiver.received) == 1
    (event,) = receiver.events()
    assert event["type"] == "grant.revoked" and event["grant_id"] == "grt_0"
    headers = receiver.received[0].headers
    assert headers["Baton-Event-Id"] == event["id"] and headers["Baton-Event-Type"] == event["type"]
    assert metrics.webhook_deliveries.labels("failed")._value.get() == 2
    assert metrics.webhook_deliveries.labels("delivered")._value.get() == 1
    assert rows(store)[0].last_error is None
    anyio.run(store.close)


def test_an_event_is_given_up_at_its_maximum_age(database: Path | str) -> None:
    store, clock = store_for(database), FakeClock()
    enqueue(store, 1, clock.now())
    # Nothing listens on port 9 of loopback: every attempt fails at once.
    sender = WebhookSender(
        options("http://127.0.0.1:9/", backoff_base=30, max_age=60), store, clock
    )

    async def scenario() -> None:
        try:
            assert await sender.deliver_due() == 1
            clock.advance(60)
            assert await sender.deliver_due() == 1
            clock.advance(10_000)
            assert await sender.deliver_due() == 0
        finally:
            await sender.close()

    anyio.run(scenario)
    (row,) = rows(store)
    assert row.attempts == 2 and row.delivered_at is None and row.next_attempt_at == NEVER
    assert row.last_error == "gave up after 2 attempts: ConnectError"
    anyio.run(store.close)


def test_a_lease_of_a_crashed_process_expires_and_the_row_is_sent(
    database: Path | str, receiver: Receiver
) -> None:
    store, clock = store_for(database), signing_clock(receiver)
    enqueue(store, 3, clock.now())
    now = clock.now()
    crashed = anyio.run(store.claim_deliveries, now, now + 60, now - 3600, 2)
    assert len(crashed) == 2  # claimed, then the process died before sending
    sender = WebhookSender(options(receiver.url, lease=60), store, clock)

    async def scenario() -> tuple[int, int]:
        try:
            first = await sender.deliver_due()  # only the unclaimed row
            clock.advance(60)
            return first, await sender.deliver_due()  # the expired leases
        finally:
            await sender.close()

    assert anyio.run(scenario) == (1, 2)
    assert sorted(e["grant_id"] for e in receiver.events()) == ["grt_0", "grt_1", "grt_2"]
    assert [row.attempts for row in rows(store)] == [2, 2, 1]
    anyio.run(store.close)


def test_two_racing_delivery_loops_send_every_event_once(
    database: Path | str, receiver: Receiver
) -> None:
    events = 40
    first, second, clock = store_for(database), store_for(database), signing_clock(receiver)
    enqueue(first, events, clock.now())
    counts = [Metrics(), Metrics()]
    senders = [
        WebhookSender(options(receiver.url, batch=5, poll_interval=0.01), store, clock, metrics)
        for store, metrics in zip((first, second), counts, strict=True)
    ]

    async def race() -> None:
        async with anyio.create_task_group() as tasks:
            for sender in senders:
                tasks.start_soon(sender.run_forever)
            with anyio.fail_after(30):
                while len(receiver.received) < events:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)  # a duplicate would arrive now
            tasks.cancel_scope.cancel()
        for sender in senders:
            await sender.close()

    anyio.run(race)
    ids = [event["id"] for event in receiver.events()]
    assert len(ids) == len(set(ids)) == events
    assert all(row.delivered_at is not None and row.attempts == 1 for row in rows(first))
    shares = [m.webhook_deliveries.labels("delivered")._value.get() for m in counts]
    assert sum(shares) == events and min(shares) > 0, shares  # both loops really raced
    for store in (first, second):
        anyio.run(store.close)


def test_the_server_delivers_a_reuse_to_the_configured_url(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    with running_app(
        tmp_path,
        clock=signing_clock(receiver),
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_poll_interval=0.02,
        webhook_backoff_base=1,
    ) as (http, store, clock):
        register_user(store)
        client = register_client(store)
        pair = first_pair(http, client)
        assert refresh(http, client, pair["refresh_token"]).status_code == 200
        clock.advance(601)
        assert refresh(http, client, pair["refresh_token"]).status_code == 400
        deadline = time.monotonic() + 10
        # The sender records the failure (and schedules the retry from the clock's now) after
        # the receiver has answered: the clock moves past the backoff only once it has.
        while not any(row.last_error for row in rows(store)) and time.monotonic() < deadline:
            time.sleep(0.02)
        clock.advance(2)  # the failed one's backoff
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    types = sorted(event["type"] for event in receiver.events())
    assert types == ["grant.revoked", "reuse_detected"]
    assert receiver.answered == 3
