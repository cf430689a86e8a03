"""Signing out at the provider: a browser session ends, and with it its grants' sign-in.

One transaction ends the session(s), revokes the grants that came from them (`grants.sid`) unless
they hold `offline_access`, and writes a back-channel logout token (OIDC Back-Channel Logout 1.0)
for each client with a grant from them: a failure leaves all of it undone, never a session ended
whose relying parties were not told.

OIDC Core §11: `offline_access` asks for a refresh token that works "even when the End-User is
not logged in"; such a grant outlives the sign-out (Back-Channel Logout §2.7: refresh tokens
"issued with the offline_access property normally SHOULD NOT be revoked", the others "SHOULD
be revoked"). Its relying party is still told that the session ended.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from baton.core.scope import parse as parse_scope
from baton.core.vocabulary import RevocationCause
from baton.store.base import SignedOut
from baton.store.schema import grants, sessions, users
from baton.store.sql import outbox
from baton.store.sql.lifecycle import revoke_grant
from baton.store.sql.rows import grant_from_labels
from baton.store.sql.statements import GRANT_COLUMNS

OFFLINE_ACCESS = "offline_access"


def session_sid(conn: Connection, digest: bytes, now: int) -> str | None:
    """The public `sid` of a live session (None: ended, expired, or from before sids)."""
    found = conn.execute(
        select(sessions.c.sid).where(
            sessions.c.digest == digest, sessions.c.ended_at.is_(None), sessions.c.expires_at > now
        )
    ).scalar()
    return None if found is None else str(found)


def end_session(conn: Connection, digest: bytes, now: int) -> SignedOut:
    """Ends the session whose cookie digest is `digest`, if it is live, with its grants."""
    row = conn.execute(
        select(sessions.c.user_id, sessions.c.sid).where(
            sessions.c.digest == digest, sessions.c.ended_at.is_(None)
        )
    ).first()
    if row is None:
        return SignedOut()
    ended = conn.execute(
        update(sessions)
        .where(sessions.c.digest == digest, sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    ).rowcount
    if ended != 1:  # another sign-out got there first (PostgreSQL)
        return SignedOut()
    return _end_grants(conn, row.user_id, [row.sid] if row.sid else [], now, 1)


def end_user_sessions(conn: Connection, user_id: int, now: int) -> SignedOut:
    """Ends every live session of the user ("sign out everywhere"), with their grants."""
    live = (
        sessions.c.user_id == user_id,
        sessions.c.ended_at.is_(None),
        sessions.c.expires_at > now,
    )
    # One statement ends the sessions and names them: a session started between a read and the
    # update would be ended with its grants left alive (PostgreSQL, READ COMMITTED).
    found = conn.execute(
        update(sessions).where(*live).values(ended_at=now).returning(sessions.c.sid)
    ).all()
    sids = sorted({sid for (sid,) in found if sid})
    return _end_grants(conn, user_id, sids, now, len(found))


def _end_grants(conn: Connection, user_id: int, sids: list[str], now: int, ended: int) -> SignedOut:
    if not sids:
        return SignedOut(sessions=ended)
    # Through the user's grants (`ix_grants_user_id`): `grants.sid` has no index of its own.
    found = (
        conn.execute(
            select(*GRANT_COLUMNS)
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(
                grants.c.user_id == user_id,
                grants.c.sid.in_(sids),
                grants.c.revoked_at.is_(None),
                grants.c.expires_at > now,
            )
            .order_by(grants.c.created_at, grants.c.id)
        )
        .mappings()
        .all()
    )
    revoked: list[str] = []
    kept: list[str] = []
    for grant in map(grant_from_labels, found):
        if OFFLINE_ACCESS in parse_scope(grant.scope):
            kept.append(grant.id)  # OIDC Core §11: offline access outlives the sign-in
            continue
        # Signing out is no sign the tokens were in the wrong hands: the consent is kept.
        if revoke_grant(conn, grant.id, now, RevocationCause.LOGOUT, grant, forget_consent=False):
            revoked.append(grant.id)
    # Back-Channel Logout §2.7: each relying party with a grant of the session is told, once
    # per session, whether its grant was revoked or (offline_access) kept.
    grants_of = [grant_from_labels(g) for g in found]
    told = outbox.logouts_for(conn, ((g.client_id, g.subject, g.sid) for g in grants_of), now)
    return SignedOut(ended, tuple(revoked), tuple(kept), tuple(told))
