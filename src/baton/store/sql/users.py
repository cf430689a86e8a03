"""Built-in users' life: listed, given a new password, disabled, enabled, deleted.

Each action is one transaction with the `audit_log` row that records it (as the console's other
actions, `baton.store.sql.admin`): the actor is an administrator in the console, or `cli:<login
name>` for a command.

Disabling a user ends, in that same transaction, everything they could still use: every live
browser session, every live grant (those with `offline_access` too: disabling is not signing
out), the authorization codes not redeemed yet and the consent challenges still open. Each grant
is revoked by the store's own `lifecycle.revoke_grant` as an administrator's revocation, so the
revocation feed announces it (resource servers reject its access tokens), a `grant.revoked`
webhook is queued, and an OpenID Connect relying party gets a back-channel logout token; the
next refresh is refused.

Deleting a user does all of that, then erases their personal data: the password hash becomes
`NO_PASSWORD`, and the claims, TOTP secret, recovery codes, upstream links, consents, sessions
and consent challenges go. The row stays, disabled, with `deleted_at` set and its username kept:
a public `sub` is the username and a pairwise one derives from it, and OpenID Connect Core §2
says a subject identifier is "never reassigned", so the name is never given to another user
(`registry.create_user` refuses it) and nobody signs in as it again (`enable_user` refuses it
too). The row also stays because grants, authorization codes and their tokens reference it:
they are the audit history of what was issued (the console's timelines, the security events),
and they expire and are purged on the usual schedule. Deleted users are left out of the list.

Each action takes the user's row lock first (its `UPDATE`), as `baton.store.sql.sessions.
start_session` reads the row `FOR SHARE`: a sign-in racing a disable either starts its session
before (and the disable ends it) or finds the user disabled and starts none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection, RowMapping, delete, func, select, update

from baton.core.vocabulary import RevocationCause
from baton.passwords import NO_PASSWORD
from baton.store.admin import PAGE, Actor, UserEnded, UserListing
from baton.store.schema import (
    auth_challenges,
    authorization_codes,
    consents,
    grants,
    recovery_codes,
    sessions,
    upstream_links,
    users,
)
from baton.store.sql import lifecycle, logout
from baton.store.sql.audit import record
from baton.store.sql.rows import grant_from_labels, user_from_row
from baton.store.sql.statements import GRANT_COLUMNS

T = TypeVar("T")


class UserStore:
    """Users' list and life-cycle actions, for a class with the store's `_read` and `_write`
    (`baton.store.sql.admin.AdminStore`, which the console and the commands both use)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:  # pragma: no cover - the host's
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:  # pragma: no cover - the host's
        raise NotImplementedError

    async def user_listing(self, offset: int = 0, limit: int = PAGE) -> list[UserListing]:
        """Users by name, with their creation and last sign-in (the last session begun)."""
        return await self._read(lambda conn: list_users(conn, offset, limit))

    async def set_password(self, username: str, password_hash: str, actor: Actor) -> bool:
        """Replaces the user's password hash (checked against the policy by the caller);
        False when there is no such user, or they were deleted."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(users)
                .where(users.c.username == username, users.c.deleted_at.is_(None))
                .values(password_hash=password_hash, password_changed_at=actor.now)
            ).rowcount
            if changed == 1:
                record(conn, actor, "user.set_password", "user", username, None)
            return changed == 1

        return await self._write(work)

    async def disable_user(self, username: str, actor: Actor) -> UserEnded | None:
        """Disables the user and ends their sessions and grants at once (see the module's
        docstring). None when there is no such user or they were disabled already."""

        def work(conn: Connection) -> UserEnded | None:
            found = conn.execute(
                update(users)
                .where(users.c.username == username, users.c.disabled_at.is_(None))
                .values(disabled_at=actor.now)
                .returning(users.c.id)
            ).scalar()
            if found is None:
                return None
            ended = end_everything(conn, int(found), actor.now)
            detail = {"sessions": ended.sessions, "grants_revoked": ended.grants_revoked}
            record(conn, actor, "user.disable", "user", username, detail)
            return ended

        return await self._write(work)

    async def enable_user(self, username: str, actor: Actor) -> bool:
        """Lets a disabled user sign in again; what the disabling ended stays ended. False when
        there is no such user, they were not disabled, or they were deleted (a deleted user
        stays disabled for good)."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(users)
                .where(
                    users.c.username == username,
                    users.c.disabled_at.is_not(None),
                    users.c.deleted_at.is_(None),
                )
                .values(disabled_at=None)
            ).rowcount
            if changed == 1:
                record(conn, actor, "user.enable", "user", username, None)
            return changed == 1

        return await self._write(work)

    async def delete_user(self, username: str, actor: Actor) -> UserEnded | None:
        """Marks the user deleted (and disabled), ends everything as `disable_user` does, then
        erases their personal data; the name stays theirs (see the module's docstring). None
        when there is no such user or they were deleted already."""

        def work(conn: Connection) -> UserEnded | None:
            # The row's lock first, as `disable_user`: no session starts after this reads them.
            found = conn.execute(
                update(users)
                .where(users.c.username == username, users.c.deleted_at.is_(None))
                .values(deleted_at=actor.now, disabled_at=actor.now)
                .returning(users.c.id)
            ).scalar()
            if found is None:
                return None
            user_id = int(found)
            ended = end_everything(conn, user_id, actor.now)
            erase(conn, user_id, actor.now)
            detail = {
                "user_id": user_id,
                "sessions": ended.sessions,
                "grants_revoked": ended.grants_revoked,
            }
            record(conn, actor, "user.delete", "user", username, detail)
            return ended

        return await self._write(work)


def list_users(conn: Connection, offset: int, limit: int) -> list[UserListing]:
    """A page of users by name; deleted users are left out."""
    rows = list(
        conn.execute(
            select(users)
            .where(users.c.deleted_at.is_(None))
            .order_by(users.c.username)
            .offset(offset)
            .limit(limit)
        )
        .mappings()
        .all()
    )
    return listings(conn, rows)


def listings(conn: Connection, mapped: Sequence[RowMapping]) -> list[UserListing]:
    """`users` rows with their creation and last sign-in (the last session begun), in one
    query along `ix_sessions_user_id`: one group per user of the page."""
    ids = [row["id"] for row in mapped]
    last: dict[int, int] = {}
    if ids:
        last = {
            int(user_id): int(at)
            for user_id, at in conn.execute(
                select(sessions.c.user_id, func.max(sessions.c.created_at))
                .where(sessions.c.user_id.in_(ids))
                .group_by(sessions.c.user_id)
            )
        }
    return [
        UserListing(user_from_row(row), int(row["created_at"]), last.get(int(row["id"])))
        for row in mapped
    ]


def end_everything(conn: Connection, user_id: int, now: int) -> UserEnded:
    """Revokes every live grant of the user and ends their sessions, codes and open consent
    challenges, in the caller's transaction."""
    live = (
        conn.execute(
            select(*GRANT_COLUMNS)
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(
                grants.c.user_id == user_id,
                grants.c.revoked_at.is_(None),
                grants.c.expires_at > now,
            )
            .order_by(grants.c.created_at, grants.c.id)
        )
        .mappings()
        .all()
    )
    revoked = 0
    for grant in map(grant_from_labels, live):
        # An administrator's revocation: the feed, the webhook and (for OpenID Connect) the
        # relying party's back-channel logout, and the remembered consent forgotten.
        if lifecycle.revoke_grant(conn, grant.id, now, RevocationCause.ADMIN, grant):
            revoked += 1
    # The grants are revoked already, so ending the sessions revokes nothing more and sends no
    # second logout token for them.
    ended = logout.end_user_sessions(conn, user_id, now).sessions
    codes = authorization_codes
    conn.execute(
        update(codes)
        .where(codes.c.user_id == user_id, codes.c.used_at.is_(None), codes.c.expires_at > now)
        .values(expires_at=now)
    )
    challenges = auth_challenges
    conn.execute(
        update(challenges)
        .where(
            challenges.c.user_id == user_id,
            challenges.c.used_at.is_(None),
            challenges.c.expires_at > now,
        )
        .values(expires_at=now)
    )
    return UserEnded(ended, revoked)


def erase(conn: Connection, user_id: int, now: int) -> None:
    """A deleted user's personal data gone; the row (its username kept) can never sign in."""
    for table in (recovery_codes, upstream_links, consents, sessions, auth_challenges):
        conn.execute(delete(table).where(table.c.user_id == user_id))
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            password_hash=NO_PASSWORD,
            is_admin=False,
            email=None,
            email_verified=False,
            profile=None,
            updated_at=now,
            password_changed_at=None,
            totp_secret=None,
            totp_last_step=None,
            mfa_required=False,
        )
    )
