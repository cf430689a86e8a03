"""Integration signals, counted in memory by each process and written in batches.

The token endpoint, introspection, /userinfo and the resource servers' reports (`/token-use`)
hand the signals they find (`baton.core.signals`) to `SignalBook.note`: a dictionary update, no
I/O, so a stale access token or a retry costs its request nothing. Every
`--signal-flush-interval` seconds the process writes what it counted as one transaction
(`SignalStore.record_signals`), merged into the store's rows per client, kind, reason, source,
grant (of a `would_refuse` only) and hour, with their counts and delays. The write is shielded
from the shutdown's cancellation (bounded by `WRITE_SECONDS`): a batch drained is written or
counted as lost, never dropped silently. A process that dies loses at most one interval of them;
they are telemetry for reports, never a decision. A write that fails drops its batch (counted in
`lost`): what waits in memory never grows past one interval's rows (`MAX_PENDING`), whatever the
database does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from baton.core.facts import AccessFacts
from baton.core.signals import Health, Refusal, Signal, SignalKind, Source, delay_bucket
from baton.store.base import Client, SignalCount

# At most this many distinct rows wait in memory; past it, signals of new rows are counted only
# in `dropped` until the next flush (a flood of bogus reports cannot grow a process's memory).
MAX_PENDING = 50_000
# Of which the rows of resource servers' reports may take this many: the rest stays for what
# the server itself decides and sees (`/token`, `/introspect`, `/userinfo`, `/authorize`), so
# that several reporters together cannot crowd it out.
MAX_REPORTED_ROWS = 30_000

# The uses one resource server may have counted per flush interval (`SignalBook.budget`): with
# `/token-use`'s cap per token and report, a hundred reports of a hundred tokens at most.
REPORTER_BUDGET = 10_000

# `client_signals.count` is a 32-bit INTEGER on PostgreSQL: a row's count saturates there rather
# than fail the flush (only a resource server reporting absurd counts gets near it).
COUNT_MAX = 2**31 - 1

log = logging.getLogger("baton.signals")

_Key = tuple[str, SignalKind, Refusal | None, Source, str | None]


class SignalWriter(Protocol):
    """What a flush asks of the store: one batch written."""

    async def record_signals(self, counts: Sequence[SignalCount]) -> None:
        """Writes one batch of counts, in one transaction."""
        ...


class SignalStore(SignalWriter, Protocol):
    """What the signals ask of the store (`baton.store.sql.signals` has the statements)."""

    async def client_health(
        self, client_ids: Sequence[str] | None, since: int, now: int
    ) -> list[Health]:
        """The integration health of these clients (None: every client with a signal since
        `since`), from the signals recorded since `since`; `now` counts their live grants."""
        ...

    async def purge_signals(self, now: int, retention: int, batch: int = 500) -> int:
        """Deletes one bounded batch of signal rows older than `retention` seconds."""
        ...

    async def access_by_digest(self, digests: Sequence[bytes]) -> dict[bytes, AccessFacts]:
        """The access tokens stored under these SHA-256 digests, keyed by digest, in one
        indexed read (`/token-use`)."""
        ...

    async def clients_by_id(self, client_ids: Sequence[str]) -> dict[str, Client]:
        """The clients of these ids that exist, in one read."""
        ...


@dataclass(slots=True)
class _Pending:
    first_at: int
    last_at: int
    count: int = 0
    delays: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class SignalBook:
    """The signals this process counted since its last flush."""

    pending: dict[_Key, _Pending] = field(default_factory=dict)
    dropped: int = 0  # signals not counted: `MAX_PENDING` rows were already waiting
    reported_rows: int = 0  # rows of `pending` from resource servers' reports
    lost: int = 0  # signals counted, then lost with a batch whose write failed
    dropped_flushed: int = 0  # `dropped` as the last flush reported it (`flush`'s `on_lost`)
    # Uses each resource server had counted since the last flush (`/token-use`): a reporter
    # gets `REPORTER_BUDGET` of them per interval, so no one of them fills the book and crowds
    # out the signals the token endpoint and introspection count.
    reported: dict[str, int] = field(default_factory=dict)

    def budget(self, reporter: str, wanted: int) -> int:
        """How many of `wanted` uses `reporter` may still have counted before the next flush
        (charged now); the rest are counted in `dropped`."""
        spent = self.reported.get(reporter, 0)
        granted = max(0, min(wanted, REPORTER_BUDGET - spent))
        self.reported[reporter] = spent + granted
        self.dropped += wanted - granted
        return granted

    def note(self, signals: Iterable[Signal], times: int = 1) -> None:
        """Counts each of `signals` `times` times (a resource server reports a use seen
        `count` times as one entry; `/token-use`)."""
        for signal in signals:
            # Only a report-only refusal keeps its grant (the share of grants a change would
            # break); the other kinds are counted per client, whatever the number of grants.
            grant = signal.grant_id if signal.kind is SignalKind.WOULD_REFUSE else None
            key = (signal.client_id, signal.kind, signal.reason, signal.source, grant)
            entry = self.pending.get(key)
            if entry is None:
                reported = signal.source is Source.RESOURCE
                if len(self.pending) >= MAX_PENDING or (
                    reported and self.reported_rows >= MAX_REPORTED_ROWS
                ):
                    self.dropped += times
                    continue
                entry = self.pending[key] = _Pending(signal.at, signal.at)
                self.reported_rows += reported
            entry.count = min(entry.count + times, COUNT_MAX)
            entry.first_at = min(entry.first_at, signal.at)
            entry.last_at = max(entry.last_at, signal.at)
            if signal.delay is not None:
                bucket = delay_bucket(signal.delay)
                entry.delays[bucket] = entry.delays.get(bucket, 0) + times

    def drain(self) -> list[SignalCount]:
        """What was counted since the last drain, as rows to write; the book starts empty."""
        pending, self.pending = self.pending, {}
        self.reported = {}
        self.reported_rows = 0
        return [
            SignalCount(
                client_id=client_id,
                kind=kind,
                reason=reason,
                source=source,
                grant_id=grant_id,
                first_at=entry.first_at,
                last_at=entry.last_at,
                count=entry.count,
                delays=entry.delays,
            )
            for (client_id, kind, reason, source, grant_id), entry in pending.items()
        ]


# Told how many signals were lost, and why: "full" (not counted: the book was full) or
# "write_failed" (a flush's batch dropped); the metrics count them (`baton_signals_lost_total`).
LostSignals = Callable[[str, int], None]


# How long one flush's write may take before its batch is given up (`flush`).
WRITE_SECONDS = 5.0


async def flush(book: SignalBook, store: SignalWriter, on_lost: LostSignals | None = None) -> int:
    """Writes what `book` counted since its last flush; returns the rows written. A failed
    write is logged and its batch dropped (counted in `book.lost`): telemetry is never retried
    into a pile that grows while the database is away."""
    full, book.dropped_flushed = book.dropped - book.dropped_flushed, book.dropped
    if full and on_lost is not None:
        on_lost("full", full)
    counts = book.drain()
    if not counts:
        return 0
    try:
        # Shielded: a shutdown that cancels the flush loop while it writes would otherwise lose
        # the batch it drained, uncounted; bounded, so that the shutdown never waits on a
        # database that does not answer (then the batch is counted as lost).
        with anyio.CancelScope(shield=True):
            with anyio.fail_after(WRITE_SECONDS):
                await store.record_signals(counts)
    except Exception as exc:
        lost = sum(count.count for count in counts)
        book.lost += lost
        # The error's class only: its text may hold the statement's parameters (client and
        # grant ids, never a token, but nothing a warning needs).
        log.warning(
            "writing %d integration signal rows failed (%s); %d signals dropped",
            len(counts),
            type(exc).__name__,
            lost,
        )
        if on_lost is not None:
            on_lost("write_failed", lost)
        return 0
    return len(counts)


async def flush_every(
    book: SignalBook, store: SignalWriter, interval: float, on_lost: LostSignals | None = None
) -> None:
    """The flush loop of a server process (`--signal-flush-interval`); the app's lifespan runs
    it and flushes once more at shutdown (`final_flush`)."""
    while True:
        await anyio.sleep(interval)
        await flush(book, store, on_lost)


FINAL_FLUSH_SECONDS = 5.0


async def final_flush(
    book: SignalBook, store: SignalWriter, on_lost: LostSignals | None = None
) -> None:
    """The last flush of a process that stops: shielded from the shutdown's cancellation, and
    given up after `FINAL_FLUSH_SECONDS` so that an unreachable database never holds it up."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_FLUSH_SECONDS):
        await flush(book, store, on_lost)
