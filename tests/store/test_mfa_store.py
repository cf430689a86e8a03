"""The second factor's store calls (baton.store.sql.mfa) on SQLite and PostgreSQL: a time step
and a recovery code are each spent once, even by requests racing each other."""

from __future__ import annotations

from pathlib import Path

import anyio

from baton.core import totp
from baton.core.keys import key_encryption_key
from baton.store.admin import Actor
from baton.store.base import MfaState
from baton.store.sql import SQLStore
from tests.support import migrated_store

KEK = key_encryption_key("test-key-encryption-key-of-32-characters!")


def _store(database: Path | str) -> SQLStore:
    return migrated_store(database / "baton.db" if isinstance(database, Path) else database)


async def _user(store: SQLStore, name: str = "alice") -> int:
    return (await store.create_user(name, "!", 0)).id


def test_a_time_step_is_spent_once_and_only_forwards(database: Path | str) -> None:
    store = _store(database)

    async def main() -> None:
        uid = await _user(store)
        assert not await store.use_totp_step(uid, 5)  # not enrolled: nothing to spend
        assert await store.enrol_totp(uid, "v1:sealed", 5, [], 0, None)
        assert not await store.enrol_totp(uid, "v1:other", 9, [], 0, None)  # first one wins
        assert not await store.use_totp_step(uid, 5)  # the enrolment's step is spent
        assert await store.use_totp_step(uid, 6)
        assert not await store.use_totp_step(uid, 6)
        assert not await store.use_totp_step(uid, 4)
        results: list[bool] = []

        async def spend() -> None:
            results.append(await store.use_totp_step(uid, 7))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(spend)
        assert sorted(results) == [False, False, False, True]
        state = await store.mfa_state(uid)
        assert state is not None and (state.sealed_secret, state.last_step) == ("v1:sealed", 7)
        await store.close()

    anyio.run(main)


def test_recovery_codes_are_spent_once_each_and_reset_forgets_them(database: Path | str) -> None:
    store = _store(database)
    codes = totp.new_recovery_codes()

    async def main() -> None:
        uid = await _user(store)
        other = await _user(store, "bob")
        assert await store.enrol_totp(uid, "v1:x", 1, totp.recovery_digests(codes, KEK), 0, None)
        first = totp.recovery_digest(codes[0], KEK)
        assert not await store.use_recovery_code(other, first, 1, None)  # not bob's
        results: list[bool] = []

        async def spend() -> None:
            results.append(await store.use_recovery_code(uid, first, 1, "192.0.2.1"))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(spend)
        assert sorted(results) == [False, False, True]
        state = await store.mfa_state(uid)
        assert state is not None and state.recovery_codes_left == 9

        reset = await store.reset_mfa("alice", Actor("cli", None, 2))
        assert reset is not None and not reset.totp_enabled
        state = await store.mfa_state(uid)
        assert state is not None and state == type(state)(None, None, 0)
        assert not await store.use_recovery_code(uid, totp.recovery_digest(codes[1], KEK), 3, None)
        assert await store.reset_mfa("nobody", Actor("cli", None, 2)) is None
        await store.close()

    anyio.run(main)


def test_requirement_is_set_per_user(database: Path | str) -> None:
    store = _store(database)

    async def main() -> None:
        await _user(store)
        for required in (True, False):
            found = await store.set_mfa_required("alice", required, Actor("cli", None, 1))
            assert found is not None and found.mfa_required is required
        assert await store.set_mfa_required("nobody", True, Actor("cli", None, 1)) is None
        await store.close()

    anyio.run(main)


def test_a_user_renews_their_codes_and_turns_it_off_unless_required(database: Path | str) -> None:
    store = _store(database)
    old, new = totp.new_recovery_codes(), totp.new_recovery_codes()

    async def main() -> None:
        uid = await _user(store)
        assert not await store.renew_recovery_codes(uid, totp.recovery_digests(new, KEK), 1, None)
        assert not await store.turn_off_totp(uid, 1, None)  # not enrolled: nothing to turn off
        assert await store.enrol_totp(uid, "v1:x", 1, totp.recovery_digests(old, KEK), 0, None)
        assert await store.use_recovery_code(uid, totp.recovery_digest(old[0], KEK), 1, None)
        assert await store.renew_recovery_codes(uid, totp.recovery_digests(new, KEK), 2, "::1")
        state = await store.mfa_state(uid)
        assert state is not None and state.recovery_codes_left == 10
        assert not await store.use_recovery_code(uid, totp.recovery_digest(old[1], KEK), 3, None)
        assert await store.use_recovery_code(uid, totp.recovery_digest(new[1], KEK), 3, None)

        await store.set_mfa_required("alice", True, Actor("cli", None, 4))
        assert not await store.turn_off_totp(uid, 5, None)
        await store.set_mfa_required("alice", False, Actor("cli", None, 6))
        assert await store.turn_off_totp(uid, 7, "::1")
        assert await store.mfa_state(uid) == MfaState(None, None, 0)
        user = await store.get_user_by_id(uid)
        assert user is not None and not user.totp_enabled
        await store.close()

    anyio.run(main)
