"""Browser sessions of the server's pages (`baton.server.runtime.sessions.SessionStore`).

A session is stored by the digest of its cookie's secret, never the secret itself; ending one
sets `ended_at`, and the purge deletes it once past the retention. A session starts only for a
user who is not disabled, read in the transaction that inserts it (`start_session`).
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, insert, select, update

from baton.core.facts import LiveSession
from baton.store.schema import sessions, users


def start_session(
    conn: Connection,
    digest: bytes,
    user_id: int,
    now: int,
    expires_at: int,
    source_address: str | None,
    sid: str | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] = (),
) -> bool:
    """A session signed in at `now` (its `created_at` is the sign-in's `auth_time`), with its
    public `sid` and how the user signed in (`acr`, `amr`: OpenID Connect Core §2). False, and
    no session, when the user is disabled (or deleted, or gone) by now.

    The sign-in read the user before this transaction: a disable committed since must still
    win. The user's row is read `FOR SHARE` on PostgreSQL, so a disable in flight (which updates
    the row first, `baton.store.sql.users`) is waited for and its `disabled_at` seen; a disable
    that comes after waits for this session's commit and then ends it. SQLite's write
    transactions are serialized already (`BEGIN IMMEDIATE`)."""
    enabled = conn.execute(
        select(users.c.id)
        .where(users.c.id == user_id, users.c.disabled_at.is_(None))
        .with_for_update(read=True)
    ).first()
    if enabled is None:
        return False
    values = {
        "digest": digest,
        "user_id": user_id,
        "created_at": now,
        "expires_at": expires_at,
        "source_address": source_address[:64] if source_address else None,
        "sid": sid,
        "acr": acr,
        "amr": json.dumps(list(amr)) if amr else None,
    }
    conn.execute(insert(sessions).values(**values))
    return True


def live_session(conn: Connection, digest: bytes, now: int) -> LiveSession | None:
    """The live session (not ended, not expired) of `digest`, with its sign-in, or None."""
    query = select(
        sessions.c.user_id, sessions.c.created_at, sessions.c.sid, sessions.c.acr, sessions.c.amr
    ).where(sessions.c.digest == digest, sessions.c.ended_at.is_(None), sessions.c.expires_at > now)
    row = conn.execute(query).first()
    if row is None:
        return None
    amr = json.loads(row.amr) if row.amr else []
    return LiveSession(
        user_id=int(row.user_id),
        auth_time=int(row.created_at),
        sid=row.sid,
        acr=row.acr,
        amr=tuple(str(method) for method in amr),
    )


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
