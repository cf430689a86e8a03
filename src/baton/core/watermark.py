"""The revocation feed's watermark: how far a reader may resume from without missing an event.

Event ids are taken from the database in order, but concurrent transactions (PostgreSQL) can
commit out of that order, and a rolled-back insert or a purge leaves a hole for good. An id
missing below a visible one is a *gap*: the transaction that took it may still commit, or the
id is gone. The watermark stops below the first gap that may still fill, and passes it only once
the database shows that it is final; never on the wall clock (a transaction can wait for a
pooled connection, a lock or a slow fsync for any time):

- SQLite serializes writers: the transaction that took a missing id ended before the one that
  took any later id began, so a gap below a visible id is final as soon as it is seen.
- PostgreSQL: the statement that reads the events also reads its snapshot's xmax, the gap's
  `horizon`. A missing id g below a visible id v was taken by a transaction T whose `nextval`
  ran before v's (the sequence is uncached, so ids are handed out in call order). T had its
  transaction id before that `nextval`, because the feed's INSERT is never the first write of
  its transaction (see `baton.store.sql.statements`), and v's transaction committed before the
  read: so xid(T) < horizon. A later statement whose snapshot's xmin is at least the horizon
  sees every transaction below it ended (`settle`): if T committed, its row is visible to that
  very statement, which re-reads the gap; if the id is still missing, it is gone for good.
  Transaction ids are the server's, not the database's: a transaction left open anywhere on it
  keeps every newer gap open, so the watermark waits (safely) until it ends.

An id is never handed out twice (on SQLite, a new row takes the largest id plus one: the purge
keeps the newest event, see `baton.store.sql.purge`). Events beyond a gap are delivered at once;
a reader resuming from the watermark may see them twice, never zero times.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gap:
    """Ids `first`..`last` (inclusive), missing below a visible event, that may still commit:
    every transaction that may hold one began below `horizon` (a PostgreSQL xid)."""

    first: int
    last: int
    horizon: int


def gaps_below(after: int, ids: Iterable[int], horizon: int | None) -> list[Gap]:
    """The gaps that may still fill among the ids after `after`, up to the last of `ids` (the
    visible ids above `after`, ascending), as read together with `horizon`; None when a gap
    below a visible id is final at once (SQLite)."""
    if horizon is None:
        return []
    gaps: list[Gap] = []
    expected = after + 1
    for event_id in ids:
        if event_id > expected:
            gaps.append(Gap(expected, event_id - 1, horizon))
        expected = event_id + 1
    return gaps


def fill(gaps: Sequence[Gap], found: Iterable[int]) -> list[Gap]:
    """`gaps` (ascending, disjoint) without the ids `found` (committed since), split where one
    was found inside."""
    ids = sorted(set(found))
    remaining: list[Gap] = []
    i = 0
    for gap in gaps:
        while i < len(ids) and ids[i] < gap.first:
            i += 1
        first = gap.first
        while i < len(ids) and ids[i] <= gap.last:
            if ids[i] > first:
                remaining.append(Gap(first, ids[i] - 1, gap.horizon))
            first = ids[i] + 1
            i += 1
        if first <= gap.last:
            remaining.append(Gap(first, gap.last, gap.horizon))
    return remaining


def settle(gaps: Sequence[Gap], oldest_running: int) -> list[Gap]:
    """The gaps that may still fill, seen by a statement whose snapshot's xmin is
    `oldest_running`: every transaction below it has ended (committed, and then visible to that
    statement, or rolled back), so a gap whose horizon is not above it is final."""
    return [gap for gap in gaps if gap.horizon > oldest_running]


def coalesce(gaps: Sequence[Gap], most: int) -> list[Gap]:
    """At most `most` gaps covering every id of `gaps` (ascending, disjoint): the nearest
    neighbours are merged first, each merged gap taking the later horizon. A merged gap also
    covers the visible ids between its parts; a reader re-reads those, and must not take them
    for new."""
    excess = len(gaps) - max(most, 1)
    if excess <= 0:
        return list(gaps)
    # The `excess` narrowest spaces between neighbours are closed.
    spaces = sorted(range(len(gaps) - 1), key=lambda k: (gaps[k + 1].first - gaps[k].last, k))
    closed = set(spaces[:excess])
    merged: list[Gap] = []
    start = gaps[0]
    for k in range(1, len(gaps)):
        gap = gaps[k]
        if k - 1 in closed:
            start = Gap(start.first, gap.last, max(start.horizon, gap.horizon))
        else:
            merged.append(start)
            start = gap
    merged.append(start)
    return merged


def covers(gaps: Sequence[Gap], event_id: int) -> bool:
    """Whether `event_id` lies inside one of `gaps` (ascending, disjoint)."""
    at = bisect_right([gap.first for gap in gaps], event_id) - 1
    return at >= 0 and event_id <= gaps[at].last


def watermark(read_to: int, gaps: Sequence[Gap]) -> int:
    """Where a reader may resume from, having read every visible event up to `read_to` and
    with `gaps` (all at or below `read_to`) still open: just below the first of them."""
    return min([read_to, *(gap.first - 1 for gap in gaps)])
