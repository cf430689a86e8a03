"""Comparing client secrets leaks nothing measurable: a secret wrong in its last character (a
near miss) is refused as fast as one wrong in its first (a far miss).

What is timed is `baton.server.endpoints.clientauth.authenticate` itself, the code every /token,
/revoke
and /introspect request runs, driven synchronously (its store answers without suspending, so one
`send` runs the coroutine to its end) with `client_secret_post` credentials. Through the HTTP
stack every sample would carry a millisecond of noise, hiding the microseconds a comparison
could leak.

Robust on a busy 2-core machine: the two kinds of sample are interleaved in random order (so a
burst of load hits both alike), each sample is a batch of calls, the statistic is the median,
the bound is generous (15 % of the median, at least 0.3 µs), and a failing measurement is repeated
twice: a real leak fails all three. Still able to fail: the last test swaps the digest
comparison for a short-circuiting `==` on the plaintext, and the same measurement must see that
leak on 100 KB secrets (a memcmp of 100 KB against one of a single byte: about 1 µs, 35-40 %
of a call here).
"""

from __future__ import annotations

import hmac
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from starlette.requests import Request

from baton.core.tokens import TokenKind, digest, mint
from baton.server.endpoints import clientauth
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.forms import Form
from baton.store.base import Client

ROUNDS = 1500
BATCH = 4
ATTEMPTS = 3


@dataclass
class OneClientStore:
    """Answers `get_client` at once, without suspending: no event loop needed."""

    client: Client

    async def get_client(self, client_id: str) -> Client | None:
        return self.client if client_id == self.client.id else None


def _client(secret_digest: bytes) -> Client:
    return Client(
        id="cl_timing",
        name="timing",
        secret_digest=secret_digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(),
        scope="",
        created_at=0,
    )


REQUEST = Request({"type": "http", "method": "POST", "path": "/token", "headers": []})


def refused(store: OneClientStore, form: Form) -> bool:
    coroutine = clientauth.authenticate(REQUEST, form, store)
    try:
        coroutine.send(None)
    except StopIteration:
        return False
    except OAuthError as exc:
        assert exc.error == "invalid_client"
        return True
    raise AssertionError("authenticate suspended")


def sample(store: OneClientStore, form: Form) -> float:
    started = time.perf_counter_ns()
    for _ in range(BATCH):
        refused(store, form)
    return (time.perf_counter_ns() - started) / BATCH


@dataclass(frozen=True)
class Measurement:
    near: float  # median ns per call
    far: float

    @property
    def difference(self) -> float:
        return abs(self.near - self.far)

    @property
    def bound(self) -> float:
        return max(300.0, 0.15 * min(self.near, self.far))

    @property
    def leaks(self) -> bool:
        return self.difference > self.bound

    def __str__(self) -> str:
        return (
            f"median near miss {self.near / 1000:.2f} µs, far miss {self.far / 1000:.2f} µs, "
            f"difference {self.difference / 1000:.2f} µs, bound {self.bound / 1000:.2f} µs"
        )


def measure(secret: str, store: OneClientStore) -> Measurement:
    near = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    far = ("A" if secret[0] != "A" else "B") + secret[1:]
    forms = {
        kind: Form([("client_id", store.client.id), ("client_secret", wrong)])
        for kind, wrong in (("near", near), ("far", far))
    }
    assert all(refused(store, form) for form in forms.values())
    for form in forms.values():  # warm up
        sample(store, form)
    times: dict[str, list[float]] = {"near": [], "far": []}
    order = ["near", "far"]
    rng = random.Random(7)
    for _ in range(ROUNDS):
        rng.shuffle(order)
        for kind in order:
            times[kind].append(sample(store, forms[kind]))
    return Measurement(statistics.median(times["near"]), statistics.median(times["far"]))


def measure_until_quiet(secret: str, store: OneClientStore) -> list[Measurement]:
    """Up to ATTEMPTS measurements, stopping at the first that shows no leak."""
    found: list[Measurement] = []
    for _ in range(ATTEMPTS):
        found.append(measure(secret, store))
        if not found[-1].leaks:
            break
    return found


SECRETS: dict[str, Callable[[], str]] = {
    "a real secret": lambda: mint(TokenKind.CLIENT_SECRET).plaintext,
    "a 100 KB secret": lambda: "s" * 100_000,
}


@pytest.mark.parametrize("make_secret", SECRETS.values(), ids=SECRETS.keys())
def test_near_and_far_misses_take_the_same_time(make_secret: Callable[[], str]) -> None:
    secret = make_secret()
    store = OneClientStore(_client(digest(secret)))
    found = measure_until_quiet(secret, store)
    assert not found[-1].leaks, "; ".join(map(str, found))


def test_the_measurement_sees_a_short_circuiting_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same measurement on a server that compared plaintext secrets with `==`."""
    secret = "s" * 100_000
    monkeypatch.setattr(clientauth, "digest", lambda text: text.encode())
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: a == b)
    store = OneClientStore(_client(secret.encode()))
    found = [measure(secret, store) for _ in range(ATTEMPTS)]
    assert all(m.leaks and m.near > m.far for m in found), "; ".join(map(str, found))
