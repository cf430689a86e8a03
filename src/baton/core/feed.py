"""The revocation feed's watermark: how far a reader may resume from without missing an event.

Event ids come from the database in insertion order, but concurrent transactions (PostgreSQL)
can commit out of that order, and a rolled-back insert leaves a hole for good. An id that is
missing while a later one is visible is therefore either still being committed or gone. The
watermark stops below such a gap until the later event is `grace` seconds old, by which time any
transaction that took the missing id has long committed or rolled back. Events beyond a gap are
still delivered at once; a reader resuming from the watermark may see them twice, never zero
times.
"""

from __future__ import annotations

from collections.abc import Iterable

GAP_GRACE = 5


def advance(since: int, events: Iterable[tuple[int, int]], now: int, grace: int = GAP_GRACE) -> int:
    """The watermark after `since`, given visible events as (id, created_at), ascending."""
    watermark = since
    for event_id, created_at in events:
        if event_id != watermark + 1 and created_at > now - grace:
            break  # a gap that may still fill
        watermark = event_id
    return watermark
