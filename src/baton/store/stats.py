"""Read-only figures for the metrics: cheap queries, run at scrape time and cached by the caller."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from baton.store.schema import grants


def active_grants(conn: Connection, now: int) -> int:
    """Grants neither revoked nor past their absolute lifetime (one indexed count)."""
    query = (
        select(func.count())
        .select_from(grants)
        .where(grants.c.revoked_at.is_(None), grants.c.expires_at > now)
    )
    return int(conn.execute(query).scalar_one())


def pool_figures(runner: Any) -> tuple[int, int] | None:
    """(connections checked out, pool capacity) of this process's connection pool, if it has
    one that counts (a `QueuePool`: PostgreSQL, or a SQLite file)."""
    engine = getattr(runner, "engine", None)
    engine = getattr(engine, "sync_engine", engine)  # an AsyncEngine wraps a sync one
    pool = getattr(engine, "pool", None)
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if not callable(checked_out) or not callable(size):
        return None
    overflow = getattr(pool, "_max_overflow", 0)
    return int(checked_out()), int(size()) + max(int(overflow), 0)
