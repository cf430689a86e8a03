"""Purging expired data in bounded batches, each one short transaction.

Sealed responses past their leeway, tokens and codes past their life plus the retention, feed
events, outbox rows and sessions past it, and whole grant families dead for longer: `purge_batch`
deletes at most a batch of each, so a large purge never holds token traffic up. Last, once
nothing else is left, the ID token seals a 0.1.0 server's purge left behind
(`orphaned_id_token_seals`).
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, or_, select, update

from baton.store.schema import (
    access_tokens,
    authorization_codes,
    client_assertions,
    client_signals,
    grants,
    refresh_tokens,
    revocation_events,
    sessions,
)
from baton.store.sql import challenges, outbox


def purge_batch(conn: Connection, now: int, horizon: int, batch: int) -> int:
    rt, at, codes = refresh_tokens, access_tokens, authorization_codes
    # Seals whose leeway has ended can never be opened again (and the leeway rules do not need
    # them: a missing seal after the leeway is simply the retired state).
    sealed = (
        select(rt.c.id)
        .where(rt.c.sealed_response.is_not(None), rt.c.retire_at <= now)
        .limit(batch)
        .scalar_subquery()
    )
    changed = conn.execute(
        update(rt).where(rt.c.id.in_(sealed)).values(sealed_response=None, sealed_id_token=None)
    ).rowcount
    # Access tokens and codes past their life plus the retention kept for audit.
    old_access = select(at.c.id).where(at.c.expires_at < horizon).limit(batch).scalar_subquery()
    changed += conn.execute(delete(at).where(at.c.id.in_(old_access))).rowcount
    old_codes = (
        select(codes.c.digest).where(codes.c.expires_at < horizon).limit(batch).scalar_subquery()
    )
    changed += conn.execute(delete(codes).where(codes.c.digest.in_(old_codes))).rowcount
    ev = revocation_events
    # The newest event stays, expired or not: SQLite gives a new row the largest id plus one,
    # and a feed emptied by a purge would hand out ids again that readers have passed.
    newest = select(func.max(ev.c.id)).scalar_subquery()
    old_events = (
        select(ev.c.id)
        .where(ev.c.expires_at < horizon, ev.c.id < newest)
        .limit(batch)
        .scalar_subquery()
    )
    changed += conn.execute(delete(ev).where(ev.c.id.in_(old_events))).rowcount
    changed += outbox.purge_batch(conn, horizon, batch)
    # A client assertion's `jti` matters only until the assertion's `exp` (RFC 7523 §3).
    ca = client_assertions
    old_jtis = select(ca.c.digest).where(ca.c.expires_at < now).limit(batch).scalar_subquery()
    changed += conn.execute(delete(ca).where(ca.c.digest.in_(old_jtis))).rowcount
    old_sessions = (
        select(sessions.c.digest)
        .where(sessions.c.expires_at < horizon)
        .limit(batch)
        .scalar_subquery()
    )
    changed += conn.execute(delete(sessions).where(sessions.c.digest.in_(old_sessions))).rowcount
    changed += challenges.purge_batch(conn, horizon, batch)
    # Whole families of grants dead (revoked or expired) for longer than the retention. A live
    # grant keeps every refresh token it ever issued, so reuse detection (RFC 6749 §10.4) works
    # for its whole life.
    dead = (
        conn.execute(
            select(grants.c.id)
            .where(or_(grants.c.revoked_at < horizon, grants.c.expires_at < horizon))
            .limit(max(batch // 10, 1))
        )
        .scalars()
        .all()
    )
    if dead:
        changed += conn.execute(delete(codes).where(codes.c.grant_id.in_(dead))).rowcount
        # `access_tokens` is indexed by grant only for the access tokens without a companion
        # (migration 0005): the others go by their companions' ids, as index lookups (a join or
        # an IN subquery let PostgreSQL scan the whole table on fresh statistics).
        paired = conn.execute(select(rt.c.id).where(rt.c.grant_id.in_(dead))).scalars().all()
        for start in range(0, len(paired), batch):
            companions = paired[start : start + batch]
            changed += conn.execute(
                delete(at).where(at.c.refresh_token_id.in_(companions))
            ).rowcount
        changed += conn.execute(
            delete(at).where(at.c.refresh_token_id.is_(None), at.c.grant_id.in_(dead))
        ).rowcount
        changed += conn.execute(delete(rt).where(rt.c.grant_id.in_(dead))).rowcount
        changed += conn.execute(delete(grants).where(grants.c.id.in_(dead))).rowcount
    return changed


def orphaned_id_token_seals(conn: Connection, now: int, batch: int) -> list[int]:
    """Refresh tokens holding an ID token seal past its leeway whose pair's seal is gone: a 0.1.0
    server's purge, during a rolling upgrade, clears `sealed_response` alone and leaves the one
    sealed beside it (migration 0009). The seal index covers only rows holding a
    `sealed_response`, so this scans the table (measured on a million rows: 60 ms on
    PostgreSQL, 86 ms on SQLite): the store runs it as a read, holding no write lock, once the
    purge's batches have nothing left (`SQLStore.purge`), not in each batch."""
    rt = refresh_tokens
    return list(
        conn.execute(
            select(rt.c.id)
            .where(
                rt.c.sealed_response.is_(None),
                rt.c.sealed_id_token.is_not(None),
                rt.c.retire_at <= now,
            )
            .limit(batch)
        ).scalars()
    )


def clear_id_token_seals(conn: Connection, ids: list[int], now: int) -> int:
    """Clears the ID token seals of `ids` (from `orphaned_id_token_seals`), by primary key."""
    rt = refresh_tokens
    return conn.execute(
        update(rt)
        .where(rt.c.id.in_(ids), rt.c.sealed_response.is_(None), rt.c.retire_at <= now)
        .values(sealed_id_token=None)
    ).rowcount


def purge_signals(conn: Connection, horizon: int, batch: int) -> int:
    """Deletes at most `batch` integration signal rows last seen before `horizon` (`now` minus
    `--signal-retention`): telemetry for reports, kept apart from the tokens' retention."""
    cs = client_signals
    old = select(cs.c.id).where(cs.c.last_at < horizon).limit(batch).scalar_subquery()
    return conn.execute(delete(cs).where(cs.c.id.in_(old))).rowcount
