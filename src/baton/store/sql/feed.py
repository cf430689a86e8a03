"""The revocation feed, as the store writes and reads it.

Writes: a transaction that makes tokens die early inserts their feed events itself (the grant's,
or its access tokens') and asks the runner to wake every process's feed readers once it has
committed. Reads: events after a cursor, with the id gaps among them checked against what the
database shows committed (see `baton.core.watermark`), so a reader never passes a revocation
still to commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Connection, func, or_, select

from baton.core.watermark import Gap, fill, gaps_below, settle
from baton.store.base import FeedRead, RevocationEvent
from baton.store.engines import WAKE_FEED, wakes_feed
from baton.store.prepared import Prepared
from baton.store.schema import revocation_events
from baton.store.sql.rows import feed_event


def announce_access_deaths(
    conn: Connection, which: Prepared, key: int, effective_at: int, now: int
) -> None:
    """Outbox events for access tokens that die at `effective_at`, before their own `exp`.

    `which` is `ANNOUNCE_COMPANION` (the access tokens of refresh token `key`) or
    `ANNOUNCE_ACCESS` (access token `key`). Readers are woken only for deaths they could
    otherwise learn of late (`wakes_feed`)."""
    if which.rowcount(
        conn, key=key, effective_at=effective_at, expiring_after=effective_at, now=now
    ) and wakes_feed(effective_at, now):
        wake_feed(conn)


def wake_feed(conn: Connection) -> None:
    """PostgreSQL: wake every process's feed readers once this transaction has committed.

    The runner sends the NOTIFY after the commit rather than in the transaction: a NOTIFY holds
    PostgreSQL's notification-queue lock through its transaction's commit, which made every
    revoking transaction of the database commit (and fsync) one at a time."""
    if conn.dialect.name == "postgresql":
        conn.info[WAKE_FEED] = True


def feed_after(
    conn: Connection, after: int, limit: int
) -> tuple[list[RevocationEvent], int | None]:
    """The feed events above `after` (at most `limit`, oldest first), and, on PostgreSQL, the
    xmax of the snapshot they were read in: the horizon of the gaps among them (see
    `baton.core.watermark`). One statement, so that both come from the same snapshot."""
    ev = revocation_events
    postgres = conn.dialect.name == "postgresql"
    horizon = select(func.pg_snapshot_xmax(func.pg_current_snapshot(), type_=BigInteger))
    columns = [*ev.c, horizon.scalar_subquery().label("horizon")] if postgres else [*ev.c]
    rows = conn.execute(select(*columns).where(ev.c.id > after).order_by(ev.c.id).limit(limit))
    events: list[RevocationEvent] = []
    seen: int | None = None
    for row in rows.mappings():
        events.append(feed_event(row))
        seen = row["horizon"] if postgres else None
    return events, seen


def read_feed(conn: Connection, after: int, limit: int, given: Sequence[Gap]) -> FeedRead:
    """`SQLStore.read_feed`: one statement reads the events (and their gaps' horizon); only if
    a gap may still fill (PostgreSQL), a second one, in a newer snapshot, reads the events that
    filled the gaps and that snapshot's xmin, which tells which gaps are final."""
    events, horizon = feed_after(conn, after, limit)
    read_to = events[-1].id if events else after
    full = len(events) == limit
    gaps = [*given, *gaps_below(after, (e.id for e in events), horizon)]
    if gaps and conn.dialect.name == "postgresql":
        ev = revocation_events
        snapshot = select(
            func.pg_snapshot_xmin(func.pg_current_snapshot(), type_=BigInteger).label("xmin_")
        ).subquery("snapshot")
        in_gaps = or_(*(ev.c.id.between(gap.first, gap.last) for gap in gaps))
        rows = conn.execute(
            select(snapshot.c.xmin_, *ev.c)
            .select_from(snapshot.outerjoin(ev, in_gaps))
            .order_by(ev.c.id)
        ).mappings()
        oldest_running: int | None = None
        found: list[RevocationEvent] = []
        for row in rows:
            oldest_running = row["xmin_"]
            if row["id"] is not None:
                found.append(feed_event(row))
        assert oldest_running is not None  # the outer join gives one row at least
        gaps = settle(fill(gaps, (e.id for e in found)), oldest_running)
        events = sorted([*events, *found], key=lambda e: e.id)
    elif gaps:
        gaps = []  # SQLite: a gap below a visible id is final
    return FeedRead(events, read_to, gaps, full)
