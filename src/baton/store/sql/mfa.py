"""The second factor's units of work: a user's TOTP secret (sealed by the caller, see
`baton.core.totp`), the last time step accepted, the recovery codes (digests), and whether a
second factor is required of the user.

A time step is accepted in one conditional UPDATE (`use_totp_step`): two requests presenting
the same code at once cannot both succeed, whichever process serves them. A recovery code is
spent the same way. Enrolment, requirement, reset, and a user's own renewal of their recovery
codes and turning off of their second factor (`baton.server.endpoints.account`) are audited
(`audit_log`: who, what, of whom; never a secret).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from baton.store.admin import Actor
from baton.store.base import MfaState, User
from baton.store.schema import recovery_codes, users
from baton.store.sql import registry
from baton.store.sql.audit import record

T = TypeVar("T")


class MfaStore:
    """The second factor's store calls; a mixin of `SQLStore`."""

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Connection], T]) -> T: ...
        async def _read(self, work: Callable[[Connection], T]) -> T: ...

    async def mfa_state(self, user_id: int) -> MfaState | None:
        """The user's secret (sealed), last step and unused recovery codes; None: no user."""
        return await self._read(lambda conn: _state(conn, user_id))

    async def enrol_totp(
        self,
        user_id: int,
        sealed_secret: str,
        step: int,
        code_digests: Sequence[bytes],
        now: int,
        address: str | None,
    ) -> bool:
        """Enrols the user (not enrolled yet, not disabled) with the secret, the step of the
        code that confirmed it already spent, and these recovery codes in place of any older
        ones. False when the user is gone, disabled or already enrolled (two enrolments at once:
        the first wins)."""

        def work(conn: Connection) -> bool:
            done = conn.execute(
                update(users)
                .where(
                    users.c.id == user_id,
                    users.c.totp_secret.is_(None),
                    users.c.disabled_at.is_(None),
                )
                .values(totp_secret=sealed_secret, totp_last_step=step)
            )
            if done.rowcount != 1:
                return False
            _replace_codes(conn, user_id, code_digests, now)
            username = _username(conn, user_id)
            record(conn, Actor(username, address, now), "user.mfa_enrol", "user", username, None)
            return True

        return await self._write(work)

    async def use_totp_step(self, user_id: int, step: int) -> bool:
        """Spends the time step `step` of the user's codes: true only if it is later than the
        last one accepted (RFC 6238 §5.2: an OTP is never accepted twice), atomically."""

        def work(conn: Connection) -> bool:
            done = conn.execute(
                update(users)
                .where(
                    users.c.id == user_id,
                    users.c.totp_secret.is_not(None),
                    or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
            return done.rowcount == 1

        return await self._write(work)

    async def use_recovery_code(
        self, user_id: int, code_digest: bytes, now: int, address: str | None
    ) -> bool:
        """Spends one of the user's unused recovery codes (by its digest), atomically: true
        once per code."""

        def work(conn: Connection) -> bool:
            done = conn.execute(
                update(recovery_codes)
                .where(
                    recovery_codes.c.digest == code_digest,
                    recovery_codes.c.user_id == user_id,
                    recovery_codes.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
            if done.rowcount != 1:
                return False
            username = _username(conn, user_id)
            left = _codes_left(conn, user_id)
            actor = Actor(username, address, now)
            record(conn, actor, "user.mfa_recovery_code", "user", username, {"codes_left": left})
            return True

        return await self._write(work)

    async def renew_recovery_codes(
        self, user_id: int, code_digests: Sequence[bytes], now: int, address: str | None
    ) -> bool:
        """Replaces every recovery code of the enrolled user (used or not) with these; the user
        asked (the actor is the user). False when the user is gone or not enrolled."""

        def work(conn: Connection) -> bool:
            enrolled = conn.execute(
                select(users.c.username).where(
                    users.c.id == user_id, users.c.totp_secret.is_not(None)
                )
            ).first()
            if enrolled is None:
                return False
            _replace_codes(conn, user_id, code_digests, now)
            username = str(enrolled[0])
            detail = {"codes": len(code_digests)}
            record(
                conn,
                Actor(username, address, now),
                "user.mfa_recovery_renew",
                "user",
                username,
                detail,
            )
            return True

        return await self._write(work)

    async def turn_off_totp(self, user_id: int, now: int, address: str | None) -> bool:
        """The user turns their own second factor off: the secret, last step and recovery codes
        are forgotten. Only while none is required of them per user (`mfa_required`; the
        administrators' requirement of `--mfa-for-admins` is the caller's to check): False when
        it is, or the user is gone or not enrolled."""

        def work(conn: Connection) -> bool:
            done = conn.execute(
                update(users)
                .where(
                    users.c.id == user_id,
                    users.c.totp_secret.is_not(None),
                    users.c.mfa_required.is_(False),
                )
                .values(totp_secret=None, totp_last_step=None)
            )
            if done.rowcount != 1:
                return False
            conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
            username = _username(conn, user_id)
            record(conn, Actor(username, address, now), "user.mfa_turn_off", "user", username, None)
            return True

        return await self._write(work)

    async def set_mfa_required(self, username: str, required: bool, actor: Actor) -> User | None:
        """Requires a second factor of the user (or no longer); the user as they now are, None
        when there is no such user."""

        def work(conn: Connection) -> User | None:
            done = conn.execute(
                update(users).where(users.c.username == username).values(mfa_required=required)
            )
            if done.rowcount != 1:
                return None
            record(conn, actor, "user.mfa_require", "user", username, {"required": required})
            return registry.user_named(conn, username)

        return await self._write(work)

    async def reset_mfa(self, username: str, actor: Actor) -> User | None:
        """Forgets the user's secret, last step and recovery codes: they enrol again at their
        next sign-in if a second factor is required of them. None when there is no such user."""

        def work(conn: Connection) -> User | None:
            found = registry.user_named(conn, username)
            if found is None:
                return None
            conn.execute(
                update(users)
                .where(users.c.id == found.id)
                .values(totp_secret=None, totp_last_step=None)
            )
            conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == found.id))
            record(conn, actor, "user.mfa_reset", "user", username, None)
            return registry.user_by_id(conn, found.id)

        return await self._write(work)


def _state(conn: Connection, user_id: int) -> MfaState | None:
    row = conn.execute(
        select(users.c.totp_secret, users.c.totp_last_step).where(users.c.id == user_id)
    ).first()
    if row is None:
        return None
    return MfaState(row[0], row[1], _codes_left(conn, user_id))


def _codes_left(conn: Connection, user_id: int) -> int:
    count = conn.execute(
        select(func.count())
        .select_from(recovery_codes)
        .where(recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))
    ).scalar_one()
    return int(count)


def _replace_codes(conn: Connection, user_id: int, digests: Sequence[bytes], now: int) -> None:
    conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    if digests:
        conn.execute(
            insert(recovery_codes),
            [{"digest": d, "user_id": user_id, "created_at": now} for d in digests],
        )


def _username(conn: Connection, user_id: int) -> str:
    name = conn.execute(select(users.c.username).where(users.c.id == user_id)).scalar_one()
    return str(name)
