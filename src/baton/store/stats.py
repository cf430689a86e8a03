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
