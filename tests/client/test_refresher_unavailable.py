"""A 503 `temporarily_unavailable` may hide a rotation that committed (the database connection
lost while the COMMIT was acknowledged: docs/security.md). The refresher gives up early, since
the server says it is down, but keeps the exchange's mark: a later call inside the leeway
recovers the pair the lost answer held, and after the leeway the session ends as a lost
response, never by presenting the rotated token again (which the server reads as reuse)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from baton.client import (
    AuthorizationServerUnavailable,
    MemoryStore,
    ReauthorizationRequired,
    Refresher,
    TokenPair,
    store_pair,
)

ISSUER = "https://baton.example"
LEEWAY = 60
UNAVAILABLE = {"error": "temporarily_unavailable", "error_description": "the database is down"}


class CommitThenDown:
    """A Baton whose first exchange commits and then answers 503, down for `down_for` s."""

    def __init__(self, now: float, down_for: float) -> None:
        self.now = now
        self.down_until = now + down_for
        self.rotated_at: float | None = None
        self.reuse_detected = False
        self.presented: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known"):
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "token_endpoint": ISSUER + "/token",
                    "refresh_token_rotation": {"retry_policy": "replay", "leeway_seconds": LEEWAY},
                },
            )
        self.now += 0.05
        form = dict(part.split("=", 1) for part in request.content.decode().split("&"))
        token = form["refresh_token"]
        self.presented.append(token)
        pair: dict[str, Any] = {"access_token": "at2", "refresh_token": "rt2", "expires_in": 60}
        if token == "rt1" and self.rotated_at is None:
            self.rotated_at = self.now  # committed; the answer is lost
            return httpx.Response(503, json=UNAVAILABLE)
        if self.now < self.down_until:
            return httpx.Response(503, json=UNAVAILABLE)
        if token == "rt1" and self.rotated_at is not None:
            if self.now - self.rotated_at <= LEEWAY:
                return httpx.Response(200, json=pair)  # `replay`: the very pair
            self.reuse_detected = True
            return httpx.Response(400, json={"error": "invalid_grant"})
        return httpx.Response(400, json={"error": "invalid_grant"})


def refresher(server: CommitThenDown, store: MemoryStore) -> Refresher:
    return Refresher.discover(
        ISSUER,
        "client",
        None,
        store,
        http=httpx.Client(transport=httpx.MockTransport(server.handler)),
        clock=lambda: server.now,
        sleep=server.sleep,
    )


def stored(server: CommitThenDown) -> MemoryStore:
    store = MemoryStore()
    first = {"access_token": "at1", "refresh_token": "rt1", "expires_in": 60}
    store_pair(store, TokenPair.from_response(first, server.now - 120))
    return store


@pytest.mark.parametrize("later", [40, 300], ids=["inside-the-leeway", "after-it"])
def test_a_503_that_hid_a_commit_never_ends_in_a_reuse_detection(later: float) -> None:
    server = CommitThenDown(1_000_000.0, down_for=30)
    store = stored(server)
    began = server.now
    with pytest.raises(AuthorizationServerUnavailable):
        refresher(server, store).refresh()
    assert server.now - began < 20  # about `timeout`, not the whole leeway
    marked = store.load()
    assert marked is not None and marked.exchanging_since is not None  # the mark stays
    server.now = began + later  # the app's next call; the database is back
    sent = len(server.presented)
    if later <= LEEWAY:
        assert refresher(server, store).refresh().refresh_token == "rt2"  # recovered
    else:
        with pytest.raises(ReauthorizationRequired):
            refresher(server, store).refresh()
        assert len(server.presented) == sent  # the rotated token never presented again
    assert not server.reuse_detected
