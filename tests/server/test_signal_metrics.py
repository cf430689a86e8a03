"""The per-client signal series at /metrics (issue 28): the clients with the most signals in the
last 24 hours get their own label, the rest are summed as `other`; one read serves the scrapes
of 30 seconds."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from baton.core.signals import Health, Refusal, SignalKind, Source
from baton.server.observability.metrics import ClientSignalFigures
from baton.store.base import SignalCount
from tests.server.test_metrics import METRICS_TOKEN, scrape, value
from tests.support import register_client, running_app

DAY = 86_400


def count(
    client_id: str,
    kind: SignalKind,
    at: int,
    n: int,
    delays: dict[int, int] | None = None,
    reason: Refusal | None = None,
    grant_id: str | None = None,
) -> SignalCount:
    return SignalCount(client_id, kind, reason, Source.TOKEN, grant_id, at, at, n, delays or {})


def test_the_top_clients_have_their_own_series_and_the_rest_are_other(tmp_path: Path) -> None:
    with running_app(tmp_path, metrics_token=METRICS_TOKEN, metrics_client_series=2) as (
        http,
        store,
        clock,
    ):
        now = clock.now()
        ids = [register_client(store).id for _ in range(4)]
        busy, second, third, fourth = ids
        anyio.run(
            store.record_signals,
            [
                count(busy, SignalKind.STALE_ACCESS, now - 60, 50, {120: 40, 300: 10}),
                count(busy, SignalKind.WOULD_REFUSE, now - 60, 50, {120: 50}, Refusal.LEEWAY, "g"),
                count(second, SignalKind.LEEWAY_RETRY, now - 10, 30, {2: 30}),
                count(third, SignalKind.REUSE, now - 5, 2),
                count(fourth, SignalKind.STALE_ACCESS, now - 7, 3, {10: 3}),
                count(fourth, SignalKind.LATE_REFRESH, now - 2 * DAY, 99),  # older than 24 h
            ],
        )
        samples = scrape(http)

        def signals(client: str, kind: SignalKind) -> float:
            return value(samples, "baton_client_signals", client=client, kind=kind.value)

        assert signals(busy, SignalKind.STALE_ACCESS) == 50
        assert signals(busy, SignalKind.WOULD_REFUSE) == 50
        assert signals(busy, SignalKind.REUSE) == 0  # every kind of a top client has a series
        assert signals(second, SignalKind.LEEWAY_RETRY) == 30
        # The third and fourth clients are summed; the late refreshes of two days ago are gone.
        assert signals("other", SignalKind.REUSE) == 2
        assert signals("other", SignalKind.STALE_ACCESS) == 3
        assert signals("other", SignalKind.LATE_REFRESH) == 0
        clients = {dict(labels).get("client") for (name, labels) in samples if "client" in name}
        assert clients == {busy, second, "other"}
        delay = "baton_client_stale_access_delay_seconds"
        assert value(samples, delay, client=busy, quantile="0.5") == 120
        assert value(samples, delay, client=busy, quantile="0.95") == 300
        # The others' delays are not merged (a scrape reads the top clients' delays only).
        assert (
            "baton_client_stale_access_delay_seconds",
            (("client", "other"), ("quantile", "0.5")),
        ) not in samples
        last_seen = "baton_client_signal_last_seen_timestamp_seconds"
        assert value(samples, last_seen, client=second, kind="leeway_retry") == now - 10
        # The busy client's one grant would break (and it has no other live one).
        assert value(samples, "baton_client_grants_breaking_ratio", client=busy) == 1.0

        # Cached: a signal written now shows at the first scrape 30 seconds after the read.
        anyio.run(store.record_signals, [count(third, SignalKind.REUSE, now, 1000)])
        assert value(scrape(http), "baton_client_signals", client=third, kind="reuse") == 0
        figures = http.app.state.metrics.client_signals  # type: ignore[attr-defined]
        figures.cache_seconds = 0
        fresh = scrape(http)
        assert value(fresh, "baton_client_signals", client=third, kind="reuse") == 1002


class CountingStore:
    """The metrics' store: counts its reads of the client signals, each one slow."""

    def __init__(self, healths: list[Health]) -> None:
        self.healths = healths
        self.reads = 0
        self.failing = False

    async def client_series(self, since: int, now: int, top: int) -> list[Health]:
        self.reads += 1
        await anyio.sleep(0.01)
        if self.failing:
            raise ConnectionError("the database went away")
        return self.healths


def test_a_scrape_storm_costs_one_read_and_a_failed_read_keeps_the_last_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health("cl_a", 0)
    health.add(SignalKind.REUSE, None, 4, 100, {})
    store = CountingStore([health])
    figures = ClientSignalFigures()

    async def storm() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(figures.refresh, store, 1_000, 20)  # type: ignore[arg-type]

    anyio.run(storm)
    assert store.reads == 1
    assert [h.client_id for h in figures.series] == ["cl_a"]

    figures.cache_seconds = 0
    store.failing = True
    anyio.run(figures.refresh, store, 2_000, 20)  # type: ignore[arg-type]
    assert store.reads == 2
    assert [h.client_id for h in figures.series] == ["cl_a"]  # the last figures stay
    assert "ConnectionError" in caplog.text


def test_lost_signals_are_counted_by_reason(tmp_path: Path) -> None:
    with running_app(tmp_path, metrics_token=METRICS_TOKEN) as (http, _store, _clock):
        metrics = http.app.state.metrics  # type: ignore[attr-defined]
        metrics.signals_lost("write_failed", 6)
        metrics.signals_lost("full", 2)
        samples = scrape(http)
    assert value(samples, "baton_signals_lost_total", reason="write_failed") == 6
    assert value(samples, "baton_signals_lost_total", reason="full") == 2
