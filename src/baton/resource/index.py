"""The revocation index: which tokens and grants die, and when.

Fed by the revocation feed; read on every request. A token is dead from the earliest
`effective_at` of any event naming it (its `jti`, its digest, or its grant); an entry is dropped
after its `expires_at`, when the tokens it names would have expired anyway. Applying an event
twice changes nothing (the feed delivers at least once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from baton.wire import RevocationKind

EventKind = RevocationKind


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    id: int
    kind: EventKind
    grant_id: str | None
    jti: str | None
    token_digest: str | None
    effective_at: float
    expires_at: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RevocationEvent:
        """Parses one feed event (a `baton.wire.FeedEvent`, as received: every member is
        checked); raises ValueError on anything malformed."""
        kind = data.get("kind")
        if kind not in ("access_token", "grant"):
            raise ValueError(f"unknown event kind {kind!r}")
        event_id, effective_at, expires_at = (
            data.get("id"),
            data.get("effective_at"),
            data.get("expires_at"),
        )
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            raise ValueError("event id must be an integer")
        for value in (effective_at, expires_at):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("effective_at and expires_at must be numbers")
        assert isinstance(effective_at, int | float) and isinstance(expires_at, int | float)
        grant_id, jti = data.get("grant_id"), data.get("jti")
        token_digest = data.get("token_digest")
        strings = (grant_id, jti, token_digest)
        if any(value is not None and not isinstance(value, str) for value in strings):
            raise ValueError("grant_id, jti and token_digest must be strings")
        if kind == "grant" and not grant_id:
            raise ValueError("a grant event needs a grant_id")
        if kind == "access_token" and not (jti or token_digest):
            raise ValueError("an access_token event needs a jti or a token_digest")
        return cls(
            id=event_id,
            kind=kind,
            grant_id=grant_id,
            jti=jti,
            token_digest=token_digest.lower() if isinstance(token_digest, str) else None,
            effective_at=float(effective_at),
            expires_at=float(expires_at),
        )


Listener = Callable[[RevocationEvent], None]


class RevocationIndex:
    """Thread-safe: written by the feed consumer, read lock-free by request handlers (a dict
    read is atomic in CPython; entries are replaced whole, never mutated)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, tuple[float, float]] = {}
        self._jtis: dict[str, tuple[float, float]] = {}
        self._digests: dict[str, tuple[float, float]] = {}
        self._listeners: list[Listener] = []
        self.applied = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def apply(self, event: RevocationEvent) -> None:
        with self._lock:
            if event.kind == "grant":
                assert event.grant_id is not None
                self._merge(self._grants, event.grant_id, event)
            else:
                if event.jti:
                    self._merge(self._jtis, event.jti, event)
                if event.token_digest:
                    self._merge(self._digests, event.token_digest, event)
            self.applied += 1
        for listener in self._listeners:
            listener(event)

    @staticmethod
    def _merge(table: dict[str, tuple[float, float]], key: str, event: RevocationEvent) -> None:
        known = table.get(key)
        if known is None:
            table[key] = (event.effective_at, event.expires_at)
        else:  # the earliest death wins; the entry matters as long as any event says so
            table[key] = (min(known[0], event.effective_at), max(known[1], event.expires_at))

    def death(
        self, *, jti: str | None = None, digest: str | None = None, grant_id: str | None = None
    ) -> float | None:
        """The earliest instant at which an event kills this token, or None."""
        times = [
            entry[0]
            for table, key in ((self._jtis, jti), (self._digests, digest), (self._grants, grant_id))
            if key is not None and (entry := table.get(key)) is not None
        ]
        return min(times) if times else None

    def is_dead(
        self,
        now: float,
        *,
        jti: str | None = None,
        digest: str | None = None,
        grant_id: str | None = None,
    ) -> bool:
        death = self.death(jti=jti, digest=digest, grant_id=grant_id)
        return death is not None and now >= death

    def prune(self, now: float) -> int:
        """Drops entries whose `expires_at` has passed; returns how many."""
        removed = 0
        with self._lock:
            for table in (self._grants, self._jtis, self._digests):
                stale = [key for key, (_, expires_at) in table.items() if expires_at < now]
                for key in stale:
                    del table[key]
                removed += len(stale)
        return removed

    def __len__(self) -> int:
        return len(self._grants) + len(self._jtis) + len(self._digests)
