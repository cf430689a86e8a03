"""Integration signals, counted in memory by each process and written in batches.

The token endpoint, introspection, /userinfo and the resource servers' reports (`/token-use`)
hand the signals they find (`baton.core.signals`) to `SignalBook.note`: a dictionary update, no
I/O, so a stale access token or a retry costs its request nothing. Every
`--signal-flush-interval` seconds the process writes what it counted as one transaction
(`SignalStore.record_signals`): one row per client, kind, reason, source and grant, with its
count and its delays. A process that dies loses at most one interval of them; they are telemetry
for reports, never a decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from baton.core.signals import Health, Refusal, Signal, SignalKind, Source, delay_bucket
from baton.store.base import SignalCount

# At most this many distinct rows wait in memory; past it, signals of new rows are counted only
# in `dropped` until the next flush (a flood of bogus reports cannot grow a process's memory).
MAX_PENDING = 50_000

_Key = tuple[str, SignalKind, Refusal | None, Source, str | None]


class SignalStore(Protocol):
    """What the signals ask of the store (`baton.store.sql.signals` has the statements)."""

    async def record_signals(self, counts: Sequence[SignalCount]) -> None:
        """Writes one batch of counts, in one transaction."""
        ...

    async def client_health(
        self, client_ids: Sequence[str] | None, since: int, now: int
    ) -> list[Health]:
        """The integration health of these clients (None: every client with a signal since
        `since`), from the signals recorded since `since`; `now` counts their live grants."""
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
    dropped: int = 0

    def note(self, signals: Iterable[Signal]) -> None:
        for signal in signals:
            key = (signal.client_id, signal.kind, signal.reason, signal.source, signal.grant_id)
            entry = self.pending.get(key)
            if entry is None:
                if len(self.pending) >= MAX_PENDING:
                    self.dropped += 1
                    continue
                entry = self.pending[key] = _Pending(signal.at, signal.at)
            entry.count += 1
            entry.first_at = min(entry.first_at, signal.at)
            entry.last_at = max(entry.last_at, signal.at)
            if signal.delay is not None:
                bucket = delay_bucket(signal.delay)
                entry.delays[bucket] = entry.delays.get(bucket, 0) + 1

    def drain(self) -> list[SignalCount]:
        """What was counted since the last drain, as rows to write; the book starts empty."""
        pending, self.pending = self.pending, {}
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
