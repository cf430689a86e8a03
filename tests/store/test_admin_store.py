"""The console's queries: a retry inside the leeway is recorded, under `replay` and `fork`, in
the transaction that answers it, and a grant's family comes back as its timeline needs it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from baton.core import timeline
from baton.core.policy import Policy, RetryPolicy
from baton.store.base import Issued, Replayed
from tests.store.test_sql_store import NOW, ask_for, first_pair
from tests.support import migrated_store, register_client, register_user


@pytest.mark.parametrize("retry", [RetryPolicy.REPLAY, RetryPolicy.FORK])
def test_a_retry_in_the_leeway_is_a_leeway_retry_event(
    database: Path | str, retry: RetryPolicy
) -> None:
    where = database / "baton.db" if isinstance(database, Path) else database
    store = migrated_store(where, Policy(retry=retry))
    register_user(store)
    client = register_client(store)
    parent = first_pair(store, client.id)
    assert parent.refresh_token is not None
    first = anyio.run(store.exchange, ask_for(parent.refresh_token, client.id, NOW + 10))
    again = anyio.run(store.exchange, ask_for(parent.refresh_token, client.id, NOW + 20))
    assert isinstance(first, Issued)
    assert isinstance(again, Replayed if retry is RetryPolicy.REPLAY else Issued)

    (event,) = anyio.run(store.security_events)
    assert (event.kind, event.generation, event.occurred_at) == ("leeway_retry", 0, NOW + 20)
    assert event.grant_id == parent.grant_id and event.source_address == "127.0.0.1"
    assert event.detail == (
        "the same pair sent again (replay)"
        if retry is RetryPolicy.REPLAY
        else "a sibling pair issued (fork)"
    )

    admin = store.admin()
    assert admin is not None
    family = anyio.run(admin.family, parent.grant_id)
    assert family is not None
    drawn = timeline.build(
        family.grant,
        family.refresh,
        family.access,
        family.events,
        now=NOW + 30,
        policy=Policy(retry=retry),
    )
    # Under fork the retry issued a sibling: two pairs of generation 1.
    assert [b.generation for b in drawn.bars] == (
        [0, 1] if retry is RetryPolicy.REPLAY else [0, 1, 1]
    )
    kinds = [m.kind for m in drawn.bars[0].marks]
    assert kinds == [timeline.Kind.EXCHANGE, timeline.Kind.RETRY]
    anyio.run(store.close)
