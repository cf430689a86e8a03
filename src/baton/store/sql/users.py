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

Deleting a user does all of that, then erases their personal data and keeps the row as a
tombstone: the username becomes `deleted-<id>` (free for a new user), the password hash
`NO_PASSWORD`, and the claims, TOTP secret, recovery codes, upstream links, consents, sessions
and consent challenges go. The row itself stays because grants, authorization codes and their
tokens reference it: they are the audit history of what was issued (the console's timelines,
the security events), and they expire and are purged on the usual schedule. A new user given the
freed name is a new row with a new id; note that a public `sub` is the username (OIDC Core §2
asks that a `sub` never be reassigned), so reusing a deleted person's name gives the new user the
old one's `sub` at clients that use public subjects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, String, cast, delete, func, insert, literal, select, update

from baton.core.vocabulary import RevocationCause
from baton.passwords import NO_PASSWORD
from baton.store.admin import PAGE, Actor, UserEnded, UserListing
from baton.store.schema import (
    audit_log,
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
from baton.store.sql.rows import grant_from_labels, user_from_row
from baton.store.sql.statements import GRANT_COLUMNS

T = TypeVar("T")

TOMBSTONE = "deleted-{id}"


def tombstone(user_id: int) -> str:
    """The username a deleted user's row keeps: never a name `baton user create` is likely to
    be asked for, and unique as the id is."""
    return TOMBSTONE.format(id=user_id)


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
        False when there is no such user."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(users)
                .where(users.c.username == username)
                .values(password_hash=password_hash, password_changed_at=actor.now)
            ).rowcount
            if changed == 1:
                audit(conn, actor, "user.set_password", username, None)
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
            audit(conn, actor, "user.disable", username, detail)
            return ended

        return await self._write(work)

    async def enable_user(self, username: str, actor: Actor) -> bool:
        """Lets a disabled user sign in again; what the disabling ended stays ended. False when
        there is no such user or they were not disabled."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(users)
                .where(users.c.username == username, users.c.disabled_at.is_not(None))
                .values(disabled_at=None)
            ).rowcount
            if changed == 1:
                audit(conn, actor, "user.enable", username, None)
            return changed == 1

        return await self._write(work)

    async def delete_user(self, username: str, actor: Actor) -> UserEnded | None:
        """Ends everything as `disable_user` does, then erases the user's personal data and
        frees the name (see the module's docstring). None when there is no such user."""

        def work(conn: Connection) -> UserEnded | None:
            found = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
            if found is None:
                return None
            user_id = int(found)
            ended = end_everything(conn, user_id, actor.now)
            erase(conn, user_id, actor.now)
            detail = {
                "user_id": user_id,
                "renamed_to": tombstone(user_id),
                "sessions": ended.sessions,
                "grants_revoked": ended.grants_revoked,
            }
            audit(conn, actor, "user.delete", username, detail)
            return ended

        return await self._write(work)


def list_users(conn: Connection, offset: int, limit: int) -> list[UserListing]:
    """A page of users by name; the tombstones of deleted users are left out."""
    alive = users.c.username != literal(TOMBSTONE.format(id=""), String).concat(
        cast(users.c.id, String)
    )
    rows = list(
        conn.execute(
            select(users).where(alive).order_by(users.c.username).offset(offset).limit(limit)
        )
        .mappings()
        .all()
    )
    ids = [row["id"] for row in rows]
    last: dict[int, int] = {}
    if ids:
        # Along `ix_sessions_user_id`: one group per user of the page.
        last = {
            int(user_id): int(at)
            for user_id, at in conn.execute(
                select(sessions.c.user_id, func.max(sessions.c.created_at))
                .where(sessions.c.user_id.in_(ids))
                .group_by(sessions.c.user_id)
            )
        }
    return [UserListing(user_from_row(row), row["created_at"], last.get(row["id"])) for row in rows]


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
    """A deleted user's personal data gone, the row a tombstone that can never sign in."""
    for table in (recovery_codes, upstream_links, consents, sessions, auth_challenges):
        conn.execute(delete(table).where(table.c.user_id == user_id))
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            username=tombstone(user_id),
            password_hash=NO_PASSWORD,
            is_admin=False,
            email=None,
            email_verified=False,
            profile=None,
            updated_at=now,
            disabled_at=now,
            password_changed_at=None,
            totp_secret=None,
            totp_last_step=None,
            mfa_required=False,
        )
    )


def audit(
    conn: Connection, actor: Actor, action: str, username: str, detail: dict[str, Any] | None
) -> None:
    """The audit row of an action on a user (as `baton.store.sql.admin`'s: never a secret)."""
    conn.execute(
        insert(audit_log).values(
            actor=actor.username,
            action=action,
            target_kind="user",
            target_id=username,
            detail=json.dumps(detail, sort_keys=True) if detail is not None else None,
            occurred_at=actor.now,
            source_address=actor.address,
        )
    )
