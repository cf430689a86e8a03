"""Opaque tokens (introspection + cache), the revocation index and the feed consumer, on fakes."""

from __future__ import annotations

import asyncio
import json

import pytest

from baton.resource import (
    InsufficientScope,
    InvalidToken,
    RevocationEvent,
    RevocationIndex,
    SSEParser,
    VerifierUnavailable,
)
from tests.resource.conftest import VerifierFactory, eventually
from tests.resource.fakes import FakeAuthServer, digest_hex


def introspections(fake: FakeAuthServer) -> int:
    return fake.requests.count("POST /introspect")


# -- opaque tokens -------------------------------------------------------------------------------


def test_active_token_is_introspected_once_then_served_from_cache(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    token = fake.opaque_token(scope="read")
    principal = verifier.verify(token, "read")
    assert (principal.subject, principal.client_id, principal.token_format) == (
        "alice",
        "app",
        "opaque",
    )
    assert principal.scopes == {"read"} and principal.grant_id == fake.opaque[token]["grant_id"]
    for _ in range(5):
        assert verifier.verify(token) == principal
    assert introspections(fake) == 1


def test_async_driver_gives_the_same_answers(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    token = fake.opaque_token()

    async def main() -> None:
        first = await verifier.averify(token, "read")
        assert await verifier.averify(token) == first
        with pytest.raises(InvalidToken):
            await verifier.averify(fake.opaque_token(active=False))

    asyncio.run(main())
    assert introspections(fake) == 2


@pytest.mark.parametrize("bound", ["exp", "revocation_at", "max_ttl"])
def test_cache_is_bounded_by_exp_revocation_at_and_the_maximum(
    fake: FakeAuthServer, make_verifier: VerifierFactory, bound: str
) -> None:
    verifier = make_verifier(cache_max_ttl=100)
    now = int(fake.now)
    token = fake.opaque_token(
        exp=now + (30 if bound == "exp" else 3600),
        revocation_at=now + 30 if bound == "revocation_at" else None,
    )
    verifier.verify(token)
    fake.now = now + (29 if bound != "max_ttl" else 99)
    verifier.verify(token)
    assert introspections(fake) == 1
    fake.now = now + (30 if bound != "max_ttl" else 100)
    fake.opaque[token]["active"] = False  # what the server says once the bound has passed
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert introspections(fake) == 2


def test_inactive_and_malformed_tokens_are_invalid_token(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    dead = fake.opaque_token(active=False)
    for token in (dead, dead, "bat_at_garbage", "not-a-token", "a.b"):
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    assert introspections(fake) == 2  # the dead one once (then remembered), the garbage once


def test_insufficient_scope(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    verifier = make_verifier()
    with pytest.raises(InsufficientScope) as refused:
        verifier.verify(fake.opaque_token(scope="read"), "read", "write")
    assert refused.value.status == 403
    assert refused.value.challenge("api") == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="requires scope: read write", scope="read write"'
    )


def test_introspection_unreachable_is_503_not_acceptance(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    fake.introspection_up = False
    with pytest.raises(VerifierUnavailable) as refused:
        verifier.verify(fake.opaque_token())
    assert refused.value.response_parts("api")[0] == 503


# -- revocation through the feed -----------------------------------------------------------------


def test_grant_revocation_event_rejects_a_cached_token_without_asking(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    token = fake.opaque_token()
    other = fake.opaque_token()
    verifier.verify(token)
    verifier.verify(other)
    event = fake.revoke_grant(fake.opaque[token]["grant_id"])
    eventually(lambda: verifier.index.applied == event["id"])
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    verifier.verify(other)
    assert introspections(fake) == 2
    assert verifier.health()["cache_entries"] == 1  # the revoked answer was evicted


def test_access_token_event_by_digest(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    verifier = make_verifier()
    token = fake.opaque_token()
    verifier.verify(token)
    body = fake.opaque[token]
    event = fake.revoke_token(token, body["jti"], body["grant_id"])
    eventually(lambda: verifier.index.applied == event["id"])
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert introspections(fake) == 1


def test_future_event_is_scheduled_by_the_resource_server(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    """A refresh token exchanged: its companion access token dies at the end of the leeway,
    announced now. It is accepted until then and refused from then on, without introspection."""
    verifier = make_verifier()
    token = fake.opaque_token()
    verifier.verify(token)
    body = fake.opaque[token]
    dies = int(fake.now) + 2
    event = fake.revoke_token(token, body["jti"], body["grant_id"], effective_at=dies)
    eventually(lambda: verifier.index.applied == event["id"])
    fake.now = dies - 0.001
    verifier.verify(token)
    fake.now = dies
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert introspections(fake) == 1


def test_revocation_arriving_while_introspection_is_in_flight_still_wins(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    """Introspection answered `active` just before the revocation: the index, consulted after
    every answer and on every cache hit, overrides the stale answer."""
    verifier = make_verifier()
    token = fake.opaque_token()
    grant_id = fake.opaque[token]["grant_id"]
    event = fake.revoke_grant(grant_id)
    fake.opaque[token]["active"] = True  # the stale answer
    eventually(lambda: verifier.index.applied == event["id"])
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_bootstrap_reads_every_page_before_reporting_healthy(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    for n in range(250):
        fake.revoke_grant(f"grt_{n}")
    verifier = make_verifier(start=False)
    assert verifier.feed is not None
    verifier.feed.page_limit = 100
    verifier.start(wait=5)
    assert verifier.feed.watermark == 250 and verifier.index.applied == 250
    assert fake.requests.count("GET /revocations") == 3


def test_feed_reconnects_and_misses_nothing(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    assert verifier.feed is not None
    tokens = [fake.opaque_token() for _ in range(3)]
    for token in tokens:
        verifier.verify(token)
    fake.stream_up = False
    fake.cut_streams()
    eventually(lambda: not verifier.feed.connected if verifier.feed else False)
    # Revoked while the resource server is cut off:
    for token in tokens[:2]:
        fake.revoke_grant(fake.opaque[token]["grant_id"])
    fake.stream_up = True
    eventually(lambda: verifier.index.applied >= 2)
    for token in tokens[:2]:
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    verifier.verify(tokens[2])
    assert verifier.feed.connections >= 2 and verifier.feed.watermark == 2
    resumed = [r for r in fake.requests if r == "GET /revocations/stream"]
    assert len(resumed) >= 2


def test_disconnected_longer_than_the_bound_fails_closed_then_recovers(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(max_disconnect=0.3)
    assert verifier.feed is not None
    token = fake.opaque_token()
    verifier.verify(token)
    fake.stream_up = False
    fake.cut_streams()
    eventually(lambda: verifier.health()["fail_closed"])
    health = verifier.health()
    assert health["mode"] == "fail_closed" and health["feed"]["disconnected_for"] >= 0.3
    assert "503" in health["feed"]["last_error"]
    before = introspections(fake)
    for _ in range(3):
        verifier.verify(token)
    assert introspections(fake) == before + 3  # every request asks
    fake.stream_up = True
    eventually(lambda: not verifier.health()["fail_closed"])
    verifier.verify(token)
    verifier.verify(token)
    assert introspections(fake) == before + 3  # the cache serves again (the index vets it)


def test_a_verifier_whose_feed_never_synced_fails_closed(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(start=False)
    token = fake.opaque_token()
    verifier.verify(token)
    verifier.verify(token)
    assert introspections(fake) == 2
    assert verifier.health()["fail_closed"] is True


def test_malformed_event_turns_the_feed_unhealthy_instead_of_skipping_it(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(max_disconnect=0.2)
    fake.events.append({"id": 1, "kind": "grant", "effective_at": "soon"})
    eventually(lambda: verifier.health()["fail_closed"])
    assert "malformed event" in str(verifier.health()["feed"]["last_error"])


# -- the index and the SSE parser ----------------------------------------------------------------


def event(**fields: object) -> RevocationEvent:
    base: dict[str, object] = {"id": 1, "kind": "grant", "grant_id": "g", "effective_at": 100}
    return RevocationEvent.from_json({"expires_at": 200, **base, **fields})


def test_index_is_idempotent_keeps_the_earliest_death_and_prunes() -> None:
    index = RevocationIndex()
    index.apply(event(effective_at=150))
    index.apply(event(effective_at=150))
    index.apply(event(id=2, effective_at=120, expires_at=300))
    assert index.death(grant_id="g") == 120
    assert not index.is_dead(119.9, grant_id="g") and index.is_dead(120, grant_id="g")
    index.apply(event(id=3, kind="access_token", grant_id="h", jti="j", token_digest="AB"))
    assert index.is_dead(100, jti="j") and index.is_dead(100, digest="ab")
    assert not index.is_dead(100, grant_id="h")  # an access-token event kills only that token
    assert index.prune(250) == 2 and len(index) == 1 and index.prune(301) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "user"},
        {"kind": "grant", "grant_id": None},
        {"kind": "access_token", "grant_id": "g"},
        {"id": "7"},
        {"effective_at": None},
    ],
)
def test_malformed_events_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        event(**bad)


def test_sse_parser() -> None:
    parser = SSEParser()
    lines = [": keep-alive", "", "id: 7", "event: revocation", 'data: {"a":', "data: 1}", ""]
    messages = [m for line in lines if (m := parser.feed(line)) is not None]
    assert len(messages) == 1
    assert (messages[0].id, messages[0].event) == ("7", "revocation")
    assert json.loads(messages[0].data.replace("\n", "")) == {"a": 1}
    assert parser.feed("data:x") is None and parser.feed("").data == "x"  # type: ignore[union-attr]
    assert parser.last_id == "7"  # the last event id persists across messages


def test_digest_helper_matches_the_contract() -> None:
    assert digest_hex("bat_at_x") == __import__("hashlib").sha256(b"bat_at_x").hexdigest()


# -- hostile or broken input ---------------------------------------------------------------------


def test_an_overlong_token_is_refused_without_asking_the_server(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    for token in ("bat_at_" + "a" * 20_000, "a" * 10_000 + ".e30." + "A" * 10_000):
        with pytest.raises(InvalidToken, match="too long"):
            verifier.verify(token)
    assert introspections(fake) == 0


def test_a_deeply_nested_introspection_answer_is_503_not_a_crash() -> None:
    """json.loads raises RecursionError on deeply nested JSON, which is no ValueError."""
    import httpx

    from baton.resource import Verifier

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"[" * 100_000))
    verifier = Verifier(
        "https://as.test",
        "rs",
        "secret",
        audience="https://as.test",
        algorithms=(),
        feed=False,
        transport=transport,
        async_transport=transport,
    )
    with pytest.raises(VerifierUnavailable, match="not JSON"):
        verifier.verify("bat_at_x")
    with pytest.raises(VerifierUnavailable, match="not JSON"):
        asyncio.run(verifier.averify("bat_at_x"))


def test_a_deeply_nested_feed_page_keeps_the_consumer_retrying(
    fake: FakeAuthServer, make_verifier: VerifierFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    handle = fake.handle

    def nested_pages(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/revocations":
            return httpx.Response(200, content=b"[" * 100_000)
        return handle(request)

    monkeypatch.setattr(fake, "handle", nested_pages)
    verifier = make_verifier(start=False)
    verifier.start()
    assert verifier.feed is not None
    eventually(lambda: "RecursionError" in str(verifier.feed.last_error))  # type: ignore[union-attr]
    assert verifier.feed._thread is not None and verifier.feed._thread.is_alive()
    assert verifier.health()["fail_closed"] is True
