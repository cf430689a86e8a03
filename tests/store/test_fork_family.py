"""Rule 3b under `fork`, in the store under real concurrency (SQLite and PostgreSQL): the siblings
issued from one refresh token are one family, and at most one of their chains continues."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import Connection, select

from baton.core.policy import Policy, RetryPolicy
from baton.core.rules import Reason
from baton.core.tokens import digest
from baton.store.base import ExchangeResult, Issued, Refused
from baton.store.schema import refresh_tokens
from baton.store.sql import SQLStore
from tests.store.test_sql_store import NOW, ask_for, first_pair, store_on
from tests.support import register_client, register_user

SIBLINGS = 20


def all_at_once(
    store: SQLStore, tokens: list[str], client_id: str, now: int
) -> list[ExchangeResult]:
    results: list[ExchangeResult] = []

    async def one(token: str) -> None:
        results.append(await store.exchange(ask_for(token, client_id, now)))

    async def run() -> None:
        async with anyio.create_task_group() as tasks:
            for token in tokens:
                tasks.start_soon(one, token)

    anyio.run(run)
    return results


def row_id(store: SQLStore, token: str) -> int:
    def work(conn: Connection) -> int:
        found = conn.execute(
            select(refresh_tokens.c.id).where(refresh_tokens.c.digest == digest(token))
        ).scalar_one()
        return int(found)

    return anyio.run(store.inspect, work)


def continued_id(store: SQLStore, token: str) -> int | None:
    def work(conn: Connection) -> int | None:
        found = conn.execute(
            select(refresh_tokens.c.continued_id).where(refresh_tokens.c.digest == digest(token))
        ).scalar_one()
        return None if found is None else int(found)

    return anyio.run(store.inspect, work)


def forked_family(database: Path | str) -> tuple[SQLStore, str, str, list[str]]:
    """A grant whose first refresh token was refreshed SIBLINGS times at once under `fork`:
    (store, client id, the parent token, the siblings' refresh tokens)."""
    store = store_on(database, Policy(retry=RetryPolicy.FORK))
    register_user(store)
    client = register_client(store)
    parent = first_pair(store, client.id).refresh_token
    assert parent is not None
    results = all_at_once(store, [parent] * SIBLINGS, client.id, NOW + 1)
    siblings = [r.pair.refresh_token for r in results if isinstance(r, Issued)]
    assert len(results) == len(siblings) == SIBLINGS  # every caller got a sibling pair
    assert all(s is not None for s in siblings)
    return store, client.id, parent, [s for s in siblings if s is not None]


def test_siblings_refreshed_at_once_continue_one_chain_and_revoke_the_grant(
    database: Path | str,
) -> None:
    store, client_id, parent, siblings = forked_family(database)
    results = all_at_once(store, siblings, client_id, NOW + 2)

    winners = [r for r in results if isinstance(r, Issued)]
    losers = [r for r in results if isinstance(r, Refused)]
    assert len(winners) == 1 and len(losers) == SIBLINGS - 1
    # The losers are reuse: the first to be judged revokes the grant (exactly once), the later
    # ones find it revoked by reuse detection.
    assert {r.reason for r in losers} <= {Reason.SIBLING_CONTINUED, Reason.GRANT_REVOKED_BY_REUSE}
    assert sum(r.revoked_grant for r in losers) == 1
    assert any(r.reason is Reason.SIBLING_CONTINUED and r.revoked_grant for r in losers)
    # The parent records the one sibling whose chain continued.
    grant_id = winners[0].pair.grant_id
    continued = continued_id(store, parent)
    assert continued in {row_id(store, s) for s in siblings}
    grant = anyio.run(store.get_grant, grant_id)
    assert grant is not None and grant.revoked_reason == "reuse"
    events = [e for e in anyio.run(store.security_events) if e.kind == "refresh_token_reuse"]
    assert len(events) == 1 and events[0].grant_id == grant_id
    anyio.run(store.close)


def test_siblings_refreshed_one_after_another(database: Path | str) -> None:
    store, client_id, parent, siblings = forked_family(database)
    first, second, *_ = siblings
    # The first sibling refreshed continues its chain, and may rotate on and retry as usual.
    child = anyio.run(store.exchange, ask_for(first, client_id, NOW + 2))
    assert isinstance(child, Issued) and child.pair.refresh_token is not None
    assert continued_id(store, parent) == row_id(store, first)
    again = anyio.run(store.exchange, ask_for(first, client_id, NOW + 3))
    assert isinstance(again, Issued) and again.retry  # its own retry: a sibling of its child
    grandchild = anyio.run(store.exchange, ask_for(child.pair.refresh_token, client_id, NOW + 4))
    assert isinstance(grandchild, Issued)
    # Any other sibling afterwards is reuse: the grant dies.
    reuse = anyio.run(store.exchange, ask_for(second, client_id, NOW + 5))
    assert reuse == Refused(Reason.SIBLING_CONTINUED, revoked_grant=True)
    assert anyio.run(store.get_grant, child.pair.grant_id).revoked_reason == "reuse"  # type: ignore[union-attr]
    anyio.run(store.close)


@pytest.mark.parametrize("leeway_left", [1, 599])
def test_a_retry_of_the_parent_after_a_sibling_continued_is_reuse(
    database: Path | str, leeway_left: int
) -> None:
    store, client_id, parent, siblings = forked_family(database)
    assert isinstance(anyio.run(store.exchange, ask_for(siblings[0], client_id, NOW + 2)), Issued)
    # The parent was exchanged at NOW + 1; its leeway (600 s) still runs, but the family moved on.
    retry = anyio.run(store.exchange, ask_for(parent, client_id, NOW + 601 - leeway_left))
    assert retry == Refused(Reason.RETRY_AFTER_CONTINUED, revoked_grant=True)
    anyio.run(store.close)


def test_a_retry_of_the_parent_racing_a_sibling_s_refresh(database: Path | str) -> None:
    """Parent retries and the first refresh of a sibling at once: whatever the order, no sibling
    issued by a retry can continue, and at most one chain does."""
    store, client_id, parent, siblings = forked_family(database)
    results = all_at_once(store, [parent] * 5 + siblings[:1], client_id, NOW + 2)
    issued = [r for r in results if isinstance(r, Issued)]
    assert continued_id(store, parent) == row_id(store, siblings[0])
    fresh = [r.pair.refresh_token for r in issued if r.pair.generation == 1]
    for token in fresh:
        assert token is not None
        late = anyio.run(store.exchange, ask_for(token, client_id, NOW + 3))
        assert isinstance(late, Refused)
        assert late.reason in {Reason.SIBLING_CONTINUED, Reason.GRANT_REVOKED_BY_REUSE}
    anyio.run(store.close)
