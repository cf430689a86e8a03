"""Fixtures for the baton.resource unit tests: a fake authorization server and verifiers on it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from baton.resource import Verifier
from tests.resource.fakes import ISSUER, RS_ID, RS_SECRET, FakeAuthServer

VerifierFactory = Callable[..., Verifier]


@pytest.fixture
def fake() -> FakeAuthServer:
    fake = FakeAuthServer()
    fake.add_key("k1")
    return fake


@pytest.fixture
def make_verifier(fake: FakeAuthServer) -> Iterator[VerifierFactory]:
    """`make_verifier(start=True, **options)`: a verifier on the fake; started ones are synced."""
    made: list[Verifier] = []

    def factory(start: bool = True, **options: Any) -> Verifier:
        transport = fake.transport()
        options.setdefault("clock", lambda: fake.now)
        # The fake issues tokens for no resource (`aud` the issuer, or none when opaque).
        options.setdefault("audience", ISSUER)
        verifier = Verifier(
            ISSUER,
            RS_ID,
            RS_SECRET,
            transport=transport,
            async_transport=transport,
            feed_transport=transport,
            **options,
        )
        made.append(verifier)
        if start:
            verifier.start(wait=5)
            assert verifier.feed_healthy(), verifier.health()
        return verifier

    yield factory
    for verifier in made:
        verifier.stop()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)
