"""The audit export never skips a row (`baton.store.sql.records.RecordStore.audit_after`).

On PostgreSQL an id is drawn when a row is inserted, not when its transaction commits: a
transaction still open holds id N while N+1 commits. A poller that read N+1 and went on after
it would never see N. The export waits for such a transaction, so what it answers is a prefix of
the ids for good: here N is held open, N+1 committed, and the export (started meanwhile) answers
both, in order, once N commits."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import pytest

from baton.core.user_claims import ClaimChanges
from baton.store.admin import Actor
from baton.store.sql import records
from tests.databases import empty_tables, plain_url
from tests.support import migrated_store, register_client, running_app

ACTOR = Actor("cli:test", None, 100)


def test_an_export_waits_for_an_audit_row_still_being_written(postgres_database: str) -> None:
    empty_tables(postgres_database)
    store = migrated_store(postgres_database)
    admin = store.admin()

    async def scenario() -> tuple[int, int, list[int]]:
        held = await asyncpg.connect(plain_url(postgres_database))
        try:
            writing = held.transaction()
            await writing.start()
            first = await held.fetchval(
                "INSERT INTO audit_log (actor, action, target_kind, target_id, occurred_at) "
                "VALUES ('cli:slow', 'user.disable', 'user', 'slow', 100) RETURNING id"
            )
            await admin.create_user_with_claims("later", "x", ClaimChanges(), ACTOR)
            exported: list[int] = []

            async def export() -> None:
                exported.extend(row.id for row in await admin.audit_after(0, 100))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(export)
                await anyio.sleep(0.3)  # the export keeps trying while the writer is open
                assert exported == []
                await writing.commit()
            return int(first), int(first) + 1, exported
        finally:
            await held.close()
            await store.close()

    first, second, exported = anyio.run(scenario)
    assert exported == [first, second]


def test_an_export_waits_a_bounded_time(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction left open after writing an audit row fails the export after
    `EXPORT_LOCK_WAIT_MS` (the server answers 503, the poller asks again) rather than holding it,
    and every audit writer queued behind it, for ever."""
    empty_tables(postgres_database)
    monkeypatch.setattr(records, "EXPORT_LOCK_WAIT_MS", 50)
    store = migrated_store(postgres_database)

    async def scenario() -> None:
        held = await asyncpg.connect(plain_url(postgres_database))
        try:
            async with held.transaction():
                await held.execute(
                    "INSERT INTO audit_log (actor, action, target_kind, target_id, occurred_at) "
                    "VALUES ('cli:stuck', 'user.disable', 'user', 'stuck', 100)"
                )
                with pytest.raises(records.AuditBusy):
                    await store.admin().audit_after(0, 10)
        finally:
            await held.close()
            await store.close()

    anyio.run(scenario)


def test_an_export_never_holds_up_other_audit_writers(postgres_database: str) -> None:
    """While an export tries for its lock behind a transaction still writing, every other audit
    writer (a sign-in among them) goes on at once: the export never waits in the lock queue,
    where PostgreSQL would queue each new writer behind it."""
    empty_tables(postgres_database)
    store = migrated_store(postgres_database)
    admin = store.admin()

    async def scenario() -> float:
        held = await asyncpg.connect(plain_url(postgres_database))
        other = await asyncpg.connect(plain_url(postgres_database))
        try:
            async with held.transaction():
                await held.execute(
                    "INSERT INTO audit_log (actor, action, target_kind, target_id, occurred_at) "
                    "VALUES ('cli:slow', 'user.disable', 'user', 'slow', 100)"
                )
                async with anyio.create_task_group() as tasks:

                    async def export() -> None:
                        with pytest.raises(records.AuditBusy):
                            await admin.audit_after(0, 10)

                    tasks.start_soon(export)
                    await anyio.sleep(0.2)  # the export is trying
                    started = anyio.current_time()
                    await other.execute(
                        "INSERT INTO audit_log (actor, action, target_kind, target_id, "
                        "occurred_at) VALUES ('client:x', 'login', 'user', 'x', 100)"
                    )
                    took = anyio.current_time() - started
            return took
        finally:
            await held.close()
            await other.close()
            await store.close()

    assert anyio.run(scenario) < 0.5


def test_a_held_export_is_a_503_to_ask_again(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_tables(postgres_database)
    monkeypatch.setattr(records, "EXPORT_LOCK_WAIT_MS", 50)
    with running_app(postgres_database) as (http, store, _clock):
        app = register_client(store, scope="admin:audit:read")
        answer = http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "admin:audit:read"},
            auth=app.basic,
        )
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

        async def held_open() -> None:
            held = await asyncpg.connect(plain_url(postgres_database))
            try:
                async with held.transaction():
                    await held.execute(
                        "INSERT INTO audit_log (actor, action, target_kind, target_id, "
                        "occurred_at) VALUES ('cli:stuck', 'user.disable', 'user', 's', 100)"
                    )
                    busy = await anyio.to_thread.run_sync(
                        lambda: http.get("/admin/api/v1/audit/export", headers=headers)
                    )
                    assert busy.status_code == 503, busy.text
                    assert busy.headers["content-type"] == "application/problem+json"
                    assert busy.headers["retry-after"] == "1"
                    assert busy.json()["type"] == "urn:baton:problem:audit-busy"
            finally:
                await held.close()

        anyio.run(held_open)
        again = http.get("/admin/api/v1/audit/export", headers=headers)
        assert again.status_code == 200 and "cli:stuck" in again.text


def test_an_export_on_sqlite_is_ascending_and_bounded(tmp_path: Path) -> None:
    store = migrated_store(tmp_path / "baton.db")
    admin = store.admin()
    for n in range(5):
        anyio.run(admin.create_user_with_claims, f"u{n}", "x", ClaimChanges(), ACTOR)
    everything = [row.id for row in anyio.run(admin.audit_after, 0, 100)]
    assert everything == sorted(everything) and len(everything) == 5
    assert [row.id for row in anyio.run(admin.audit_after, everything[1], 2)] == everything[2:4]
    assert anyio.run(admin.audit_after, everything[-1], 10) == []


@pytest.mark.parametrize("limit", [0, -5, 10**9])
def test_an_export_limit_is_clamped(tmp_path: Path, limit: int) -> None:
    store = migrated_store(tmp_path / "baton.db")
    admin = store.admin()
    anyio.run(admin.create_user_with_claims, "u", "x", ClaimChanges(), ACTOR)
    assert len(anyio.run(admin.audit_after, 0, limit)) == 1
