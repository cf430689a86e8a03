"""The flush of integration signals (issue 28): each process writes what it counted every
`--signal-flush-interval` seconds and once more when it stops; a failed write drops its batch
(counted) rather than keep it, and the purge deletes rows past `--signal-retention`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.core.signals import Health, Refusal, Signal, SignalKind, Source
from baton.server import app as app_module
from baton.server.runtime import signals as signals_module
from baton.server.runtime.signals import (
    COUNT_MAX,
    MAX_PENDING,
    MAX_REPORTED_ROWS,
    SignalBook,
    final_flush,
    flush,
    flush_every,
)
from baton.store.base import SignalCount
from tests.support import migrated_store, register_client, register_user, running_app

NOW = 1_700_000_000


class Recorder:
    """A `SignalStore` that keeps what it was given, or fails every write."""

    def __init__(self, *, failing: bool = False) -> None:
        self.failing = failing
        self.batches: list[list[SignalCount]] = []
        self.purged: list[tuple[int, int]] = []

    async def record_signals(self, counts: Sequence[SignalCount]) -> None:
        if self.failing:
            raise ConnectionError("the database went away")
        self.batches.append(list(counts))

    async def client_health(
        self, client_ids: Sequence[str] | None, since: int, now: int
    ) -> list[Health]:
        return []

    async def purge_signals(self, now: int, retention: int, batch: int = 500) -> int:
        self.purged.append((now, retention))
        return 0


def stale(client_id: str, at: int, delay: int, grant_id: str = "g1") -> Signal:
    return Signal(client_id, SignalKind.STALE_ACCESS, at, Source.RESOURCE, grant_id, delay)


def refused(
    client_id: str, at: int, delay: int, grant_id: str = "g1", source: Source = Source.RESOURCE
) -> Signal:
    return Signal(client_id, SignalKind.WOULD_REFUSE, at, source, grant_id, delay, Refusal.LEEWAY)


def test_only_refusals_are_counted_per_grant() -> None:
    """A stale use's grant is not kept: the book (and the store) count it per client, so a
    client with many grants does not fill the book; a refusal keeps its grant."""
    book = SignalBook()
    book.note([stale("a", NOW, 1, grant_id=f"g{i}") for i in range(1000)])
    book.note([refused("a", NOW, 1, grant_id=f"g{i}") for i in range(3)])
    counts = book.drain()
    assert sorted((c.kind, c.grant_id, c.count) for c in counts) == [
        (SignalKind.STALE_ACCESS, None, 1000),
        (SignalKind.WOULD_REFUSE, "g0", 1),
        (SignalKind.WOULD_REFUSE, "g1", 1),
        (SignalKind.WOULD_REFUSE, "g2", 1),
    ]


def test_a_flush_writes_one_row_per_client_kind_reason_source_and_grant() -> None:
    book = SignalBook()
    book.note([stale("a", NOW, 120), stale("a", NOW + 5, 121), stale("b", NOW, 3)])
    book.note([stale("a", NOW + 9, 130)], times=4)  # a use a resource server saw 4 times
    refused = Signal("a", SignalKind.WOULD_REFUSE, NOW, Source.TOKEN, "g1", 700, Refusal.LEEWAY)
    book.note([refused])
    store = Recorder()
    assert anyio.run(flush, book, store) == 3
    rows = {(c.client_id, c.kind, c.reason): c for c in store.batches[0]}
    a = rows[("a", SignalKind.STALE_ACCESS, None)]
    assert (a.count, a.first_at, a.last_at) == (6, NOW, NOW + 9)
    assert a.delays == {120: 1, 121: 1, 130: 4}
    assert rows[("a", SignalKind.WOULD_REFUSE, Refusal.LEEWAY)].count == 1
    # The book starts empty, and an empty book costs the store nothing.
    assert book.pending == {}
    assert anyio.run(flush, book, store) == 0
    assert len(store.batches) == 1


def test_a_failed_write_drops_its_batch_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    book = SignalBook()
    book.note([stale("a", NOW, 10), stale("b", NOW, 10)], times=3)
    told: list[tuple[str, int]] = []
    with caplog.at_level(logging.WARNING, logger="baton.signals"):
        failing = Recorder(failing=True)
        assert anyio.run(flush, book, failing, lambda *lost: told.append(lost)) == 0
    assert book.lost == 6 and book.pending == {}  # nothing kept to grow while the store is away
    assert told == [("write_failed", 6)]  # the metrics count it (baton_signals_lost_total)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "2 integration signal rows" in record.getMessage()
    assert "ConnectionError" in record.getMessage()
    # The next flush writes what was counted since, the lost batch is not retried.
    book.note([stale("a", NOW + 1, 10)])
    store = Recorder()
    anyio.run(flush, book, store)
    assert [(c.client_id, c.count) for c in store.batches[0]] == [("a", 1)]


def test_the_book_is_bounded_and_a_rows_count_saturates() -> None:
    book = SignalBook()
    seen = Source.INTROSPECTION
    book.note([refused("a", NOW, 1, f"g{i}", seen) for i in range(MAX_PENDING)])
    book.note([refused("a", NOW, 1, "one-too-many", seen)], times=7)
    assert len(book.pending) == MAX_PENDING and book.dropped == 7
    # The next flush tells how many were not counted, once.
    told: list[tuple[str, int]] = []
    kept = dict(book.pending)
    anyio.run(flush, book, Recorder(), lambda *lost: told.append(lost))
    anyio.run(flush, book, Recorder(), lambda *lost: told.append(lost))
    assert told == [("full", 7)]
    book.pending = kept
    book.note([refused("a", NOW, 1, "g0", seen)], times=COUNT_MAX)
    (count,) = [c.count for c in book.drain() if c.grant_id == "g0"]
    assert count == COUNT_MAX  # what PostgreSQL's INTEGER column holds


def test_the_loop_flushes_every_interval() -> None:
    book, store = SignalBook(), Recorder()

    async def scenario() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(flush_every, book, store, 0.005)
            book.note([stale("a", NOW, 1)])
            with anyio.fail_after(2):
                while not store.batches:
                    await anyio.sleep(0.001)
            book.note([stale("b", NOW, 1)])
            with anyio.fail_after(2):
                while len(store.batches) < 2:
                    await anyio.sleep(0.001)
            tasks.cancel_scope.cancel()

    anyio.run(scenario)
    assert [[c.client_id for c in batch] for batch in store.batches] == [["a"], ["b"]]


def test_the_server_flushes_what_it_counted_when_it_stops(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    with running_app(tmp_path, clock=clock) as (http, store, _clock):
        register_user(store)
        client = register_client(store).id
        book = http.app.state.baton.signals  # type: ignore[attr-defined]
        book.note([stale(client, NOW, 42)], times=2)
    # The lifespan closed the store after its last flush: read it back on a fresh one.
    reopened = migrated_store(tmp_path / "baton.db")
    (health,) = anyio.run(reopened.client_health, [client], NOW - 60, NOW)
    anyio.run(reopened.close)
    assert health.tally(SignalKind.STALE_ACCESS).count == 2
    assert health.tally(SignalKind.STALE_ACCESS).delays == {42: 2}


def test_the_purge_deletes_signals_past_their_own_retention() -> None:
    """The app's purge loop asks for the signals' purge with `--signal-retention`."""
    settings = Settings(purge_interval=0, signal_retention=7 * 86_400)

    class Store(Recorder):
        async def purge(self, now: int, retention: int, batch: int = 500) -> int:
            return 0

    purging = Store()

    async def expire_unused(*_args: object) -> int:
        return 0

    async def scenario() -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(app_module, "expire_unused", expire_unused)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    app_module._purge,
                    cast(Any, purging),  # the two calls the purge loop makes
                    FakeClock(NOW),
                    settings,
                )
                with anyio.fail_after(2):
                    while not purging.purged:
                        await anyio.sleep(0.001)
                tasks.cancel_scope.cancel()

    anyio.run(scenario)
    assert purging.purged[0] == (NOW, 7 * 86_400)


class SlowStore:
    """A store whose write awaits the database (asyncpg: cancellable on the loop)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.written: list[int] = []
        self.started = anyio.Event()

    async def record_signals(self, counts: Sequence[SignalCount]) -> None:
        self.started.set()
        await anyio.sleep(self.seconds)  # the INSERT's round trip
        self.written.append(sum(c.count for c in counts))


def test_a_shutdown_during_a_flush_still_writes_the_batch_it_drained() -> None:
    """Review finding (issue 28): the lifespan cancelled the flush loop while it wrote the batch
    it had drained, and the batch vanished, neither written nor counted as lost."""
    store = SlowStore(0.05)
    book = SignalBook()
    lost: list[tuple[str, int]] = []

    async def main() -> None:
        book.note([stale("c", NOW, 5)], times=7)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(flush_every, book, store, 0.01, lambda r, n: lost.append((r, n)))
            await store.started.wait()  # the loop drained the book and is writing it
            tasks.cancel_scope.cancel()  # what the lifespan does at shutdown
        await final_flush(book, store, lambda r, n: lost.append((r, n)))

    anyio.run(main)
    assert store.written == [7] and lost == []


def test_a_write_that_never_ends_is_given_up_and_counted_as_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(signals_module, "WRITE_SECONDS", 0.05)
    store = SlowStore(10)
    book = SignalBook()
    lost: list[tuple[str, int]] = []
    book.note([stale("c", NOW, 5)], times=7)
    assert anyio.run(flush, book, store, lambda r, n: lost.append((r, n))) == 0
    assert store.written == [] and lost == [("write_failed", 7)] and book.lost == 7


def test_resource_servers_reports_leave_room_for_what_the_server_sees() -> None:
    """Reports (several resource servers together) fill at most `MAX_REPORTED_ROWS` rows of the
    book: the token endpoint's and introspection's signals are still counted (re-review L1)."""
    book = SignalBook()
    book.note([refused("a", NOW, 1, f"g{i}") for i in range(MAX_REPORTED_ROWS + 5)])
    assert len(book.pending) == MAX_REPORTED_ROWS and book.dropped == 5
    book.note([refused("b", NOW, 1, "g1", Source.TOKEN), stale("b", NOW, 3)])
    assert ("b", SignalKind.WOULD_REFUSE, Refusal.LEEWAY, Source.TOKEN, "g1") in book.pending
    assert book.dropped == 6  # the report's new row found no room; the token endpoint's did
    book.drain()
    book.note([refused("a", NOW, 1, "again")])
    assert len(book.pending) == 1  # a flush frees the reports' share
