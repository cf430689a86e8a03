"""Browser sessions of the server's pages (`baton.server.runtime.sessions.SessionStore`).

A session is stored by the digest of its cookie's secret, never the secret itself; ending one
sets `ended_at`, and the purge deletes it once past the retention.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from baton.store.schema import sessions


def start_session(
    conn: Connection,
    digest: bytes,
    user_id: int,
    now: int,
    expires_at: int,
    source_address: str | None,
) -> None:
    values = {
        "digest": digest,
        "user_id": user_id,
        "created_at": now,
        "expires_at": expires_at,
        "source_address": source_address[:64] if source_address else None,
    }
    conn.execute(insert(sessions).values(**values))


def session_user(conn: Connection, digest: bytes, now: int) -> int | None:
    query = select(sessions.c.user_id).where(
        sessions.c.digest == digest, sessions.c.ended_at.is_(None), sessions.c.expires_at > now
    )
    found = conn.execute(query).scalar()
    return None if found is None else int(found)


def end_session(conn: Connection, digest: bytes, now: int) -> None:
    ended = (
        update(sessions)
        .where(sessions.c.digest == digest, sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
    conn.execute(ended)


def end_user_sessions(conn: Connection, user_id: int, now: int) -> int:
    """Ends every live session of a user ("sign out everywhere"); how many there were."""
    live = (
        update(sessions)
        .where(
            sessions.c.user_id == user_id,
            sessions.c.ended_at.is_(None),
            sessions.c.expires_at > now,
        )
        .values(ended_at=now)
    )
    return int(conn.execute(live).rowcount)
