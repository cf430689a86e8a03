"""Read-only figures for the metrics: cheap queries, run at scrape time and cached by the caller."""

from __future__ import annotations

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


def pool_figures(runner: object) -> tuple[int, int] | None:
    """(connections checked out, pool capacity) of this process's connection pool, if it has
    one that counts (PostgreSQL with a pool, or a SQLite file): the runner's `pool_use()`."""
    pool_use = getattr(runner, "pool_use", None)
    if not callable(pool_use):
        return None
    figures: tuple[int, int] | None = pool_use()
    return figures
