"""The store under a client's policy, as a review of issue 28 found it wanting: a family forked
under an earlier policy stays one family after the client (or the server) moves on from `fork`,
at the exchange and at introspection alike; and a kept refresh token's stamps never go back.

Each test runs on SQLite and on PostgreSQL (the `database` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, update

from baton.core import rules
from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.facts import RefreshFacts
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.rules import Reason
from baton.core.tokens import digest
from baton.store.base import Client, Issued, Refused, Replayed
from baton.store.schema import clients
from baton.store.sql import SQLStore, lifecycle
from tests.store.test_client_policy_store import (
    NOW,
    SERVER,
    ask_for,
    first_pair,
    refresh_row,
    set_up,
    store_on,
)
from tests.support import register_client, register_user

DAY = 86_400
FORK = PolicySettings(retry=RetryPolicy.FORK)
REPLAY = PolicySettings(retry=RetryPolicy.REPLAY)
STRICT = PolicySettings(retry=RetryPolicy.STRICT)
CHANGED_AT = NOW + 250  # the client moves on from `fork`


def give_policy(store: SQLStore, client_id: str, policy: ClientPolicy) -> Client:
    """Writes the client's policy as the admin store does; the client as it now reads."""

    def work(conn: Connection) -> None:
        conn.execute(
            update(clients).where(clients.c.id == client_id).values(policy=policy.stored())
        )

    anyio.run(store.runner.write, work)
    client = anyio.run(store.get_client, client_id)
    assert client is not None
    return client


def forked_then(settings: PolicySettings) -> ClientPolicy:
    """`fork` from before the first pair, then `settings` from `CHANGED_AT`."""
    return (
        ClientPolicy().schedule(FORK, NOW - 10, NOW - 10).schedule(settings, CHANGED_AT, CHANGED_AT)
    )


def exchange(store: SQLStore, token: str | None, client: Client, now: int) -> Any:
    """A refresh by `client` (confirmed, as the token endpoint asks) under its policy at `now`."""
    policy = client.policy.at(store.policy, now)
    ask = replace(ask_for(token, client.id, now, policy), client=client)
    return anyio.run(store.exchange, ask)


def forked_family(store: SQLStore, client: Client) -> tuple[Any, Any, Any, Any]:
    """R0 exchanged for R1, retried for the sibling R1b, and R1's chain continued (R2): all
    under `fork`. (R0, R1, R1b, R2)"""
    r0 = first_pair(store, client.id, client.policy.at(store.policy, NOW))
    r1 = exchange(store, r0.refresh_token, client, NOW + 100)
    r1b = exchange(store, r0.refresh_token, client, NOW + 110)
    assert isinstance(r1b, Issued) and r1b.retry  # a sibling
    r2 = exchange(store, r1.pair.refresh_token, client, NOW + 200)
    assert isinstance(r2, Issued) and not r2.retry
    return r0, r1.pair, r1b.pair, r2.pair


@pytest.fixture
def lineage_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each read of a refresh token's facts asked for its lineage."""
    seen: list[bool] = []
    read = lifecycle.refresh_facts

    def recording(*args: Any, lineage: bool = False, **kwargs: Any) -> Any:
        seen.append(lineage)
        return read(*args, lineage=lineage, **kwargs)

    monkeypatch.setattr(lifecycle, "refresh_facts", recording)
    yield seen


@pytest.mark.parametrize("then", [REPLAY, STRICT], ids=["replay", "strict"])
def test_a_sibling_forked_before_a_move_from_fork_is_still_reuse(
    database: Path | str, then: PolicySettings
) -> None:
    store, client_id = set_up(database)
    client = give_policy(store, client_id, forked_then(then))
    _, _, sibling, r2 = forked_family(store, client)
    out = exchange(store, sibling.refresh_token, client, CHANGED_AT + 50)
    assert isinstance(out, Refused) and out.reason is Reason.SIBLING_CONTINUED
    assert out.revoked_grant
    # The family is gone: the chain that continued is refused too.
    again = exchange(store, r2.refresh_token, client, CHANGED_AT + 60)
    assert isinstance(again, Refused) and again.reason is Reason.GRANT_REVOKED_BY_REUSE
    anyio.run(store.close)


@pytest.mark.parametrize("then", [REPLAY, STRICT], ids=["replay", "strict"])
def test_siblings_forked_before_a_move_never_both_continue(
    database: Path | str, then: PolicySettings
) -> None:
    """R0 exchanged for R1 and retried for R1b under `fork`; no child continued before the
    move. After it, the first sibling refreshed continues the family and the other is reuse
    (rule 3b), as under `fork`: a move away from `fork` must not let two chains live."""
    store, client_id = set_up(database)
    client = give_policy(store, client_id, forked_then(then))
    r0 = first_pair(store, client.id, client.policy.at(store.policy, NOW))
    r1 = exchange(store, r0.refresh_token, client, NOW + 100)
    r1b = exchange(store, r0.refresh_token, client, NOW + 110)
    assert isinstance(r1, Issued) and isinstance(r1b, Issued) and r1b.retry
    first = exchange(store, r1.pair.refresh_token, client, CHANGED_AT + 50)
    assert isinstance(first, Issued) and not first.retry
    second = exchange(store, r1b.pair.refresh_token, client, CHANGED_AT + 60)
    assert isinstance(second, Refused) and second.reason is Reason.SIBLING_CONTINUED
    assert second.revoked_grant
    anyio.run(store.close)


def test_a_retry_of_a_continued_parent_after_a_move_to_replay_is_reuse(
    database: Path | str,
) -> None:
    store, client_id = set_up(database)
    client = give_policy(store, client_id, forked_then(REPLAY))
    r0, _, _, _ = forked_family(store, client)
    # R0 is still inside its 600 s leeway, but R1's chain continued.
    out = exchange(store, r0.refresh_token, client, CHANGED_AT + 50)
    assert isinstance(out, Refused) and out.reason is Reason.RETRY_AFTER_CONTINUED
    assert out.revoked_grant
    anyio.run(store.close)


def test_a_sibling_forked_under_the_servers_fork_is_reuse_under_the_clients_replay(
    database: Path | str,
) -> None:
    store = store_on(database, Policy(retry=RetryPolicy.FORK))
    register_user(store)
    client_id = register_client(store).id
    client = anyio.run(store.get_client, client_id)
    assert client is not None
    _, _, sibling, _ = forked_family(store, client)
    client = give_policy(store, client_id, ClientPolicy().schedule(REPLAY, CHANGED_AT, CHANGED_AT))
    out = exchange(store, sibling.refresh_token, client, CHANGED_AT + 50)
    assert isinstance(out, Refused) and out.reason is Reason.SIBLING_CONTINUED
    anyio.run(store.close)


def test_a_retry_after_a_move_to_replay_gets_a_sibling(database: Path | str) -> None:
    """R0 exchanged under `fork` (no sealed response to replay), retried after the move and
    before any child continued: a sibling, issued as `fork` issues them (the parent's
    continuation guarded, the lineage having been read)."""
    store, client_id = set_up(database)
    client = give_policy(store, client_id, forked_then(REPLAY))
    r0 = first_pair(store, client.id, client.policy.at(store.policy, NOW))
    r1 = exchange(store, r0.refresh_token, client, NOW + 100)
    assert isinstance(r1, Issued)
    sibling = exchange(store, r0.refresh_token, client, CHANGED_AT + 10)
    assert isinstance(sibling, Issued) and sibling.retry
    anyio.run(store.close)


def test_introspection_and_the_exchange_agree_on_a_forked_family(database: Path | str) -> None:
    """A resource server (never under `fork` itself) introspecting the owner's tokens: the
    owner's history decides whether the lineage is read, so the sibling it would refuse is not
    reported active."""
    store, client_id = set_up(database)
    client = give_policy(store, client_id, forked_then(REPLAY))
    api_id = register_client(store, resource_server=True, name="api").id
    api = anyio.run(store.get_client, api_id)
    assert api is not None
    r0, _, sibling, r2 = forked_family(store, client)
    now = CHANGED_AT + 50
    in_force = client.policy.at(store.policy, now)
    for asking in (api, client):
        for token, active in ((sibling, False), (r2, True)):
            found = anyio.run(store.find_token, asking, digest(token.refresh_token), True, now)
            assert isinstance(found, RefreshFacts)
            assert rules.refresh_liveness(found, now, in_force).active is active
        parent = anyio.run(store.find_token, asking, digest(r0.refresh_token), True, now)
        assert isinstance(parent, RefreshFacts)
        assert not rules.refresh_liveness(parent, now, in_force).active
    out = exchange(store, sibling.refresh_token, client, now)
    assert isinstance(out, Refused) and out.reason is Reason.SIBLING_CONTINUED
    anyio.run(store.close)


def test_a_client_that_never_forked_pays_nothing_for_the_lineage(
    database: Path | str, lineage_reads: list[bool]
) -> None:
    store, client_id = set_up(database)
    client = give_policy(
        store,
        client_id,
        ClientPolicy()
        .schedule(STRICT, NOW - 10, NOW - 10)
        .schedule(REPLAY, CHANGED_AT, CHANGED_AT),
    )
    api = anyio.run(store.get_client, register_client(store, resource_server=True).id)
    assert api is not None
    pair = first_pair(store, client_id, client.policy.at(store.policy, NOW))
    child = exchange(store, pair.refresh_token, client, CHANGED_AT + 10)
    assert isinstance(child, Issued)
    assert isinstance(exchange(store, child.pair.refresh_token, client, CHANGED_AT + 20), Issued)
    assert child.pair.refresh_token is not None
    for asking in (client, api):
        found = anyio.run(
            store.find_token, asking, digest(child.pair.refresh_token), True, NOW + 1000
        )
        assert isinstance(found, RefreshFacts)
    assert lineage_reads and not any(lineage_reads)
    anyio.run(store.close)


def test_a_fork_anywhere_in_the_history_reads_the_lineage() -> None:
    never = ClientPolicy().schedule(STRICT, NOW, NOW).schedule(REPLAY, NOW + 1, NOW + 1)
    assert not lifecycle.may_have_forked(SERVER, never, NOW)
    assert not lifecycle.may_have_forked(SERVER, ClientPolicy(), NOW)
    assert lifecycle.may_have_forked(SERVER, forked_then(REPLAY), NOW)
    assert lifecycle.may_have_forked(Policy(retry=RetryPolicy.FORK), never, NOW)
    assert lifecycle.may_have_forked(SERVER, None, NOW)  # a policy not known: it may have


# -- a kept refresh token (`rotate` False) --------------------------------------------------------

KEEP = Policy(rotate=False)


def test_a_keep_that_commits_last_never_takes_a_later_uses_stamps_back(
    database: Path | str,
) -> None:
    """Two keeps at once, the one whose clock read the earlier second committing last (what
    PostgreSQL's READ COMMITTED lets happen): the row keeps the later use's stamps."""
    store, client_id = set_up(database)
    pair = first_pair(store, client_id, KEEP)
    later = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 20, KEEP))
    earlier = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 10, KEEP))
    assert isinstance(later, Issued) and later.kept
    assert isinstance(earlier, Issued) and earlier.kept
    row = refresh_row(store, pair.refresh_token)
    assert row["issued_at"] == NOW + 20
    assert row["expires_at"] == NOW + 20 + 90 * DAY
    assert row["access_expires_at"] == NOW + 20 + 3600
    # The earlier one is told the expiry as stored.
    assert earlier.pair.refresh_expires_at == NOW + 20 + 90 * DAY
    anyio.run(store.close)


def test_a_later_keep_under_a_shorter_idle_lifetime_shortens_the_expiry(
    database: Path | str,
) -> None:
    """The stamps are the latest use's, not each column's largest: a policy with a shorter idle
    lifetime shortens the token's expiry at its next use."""
    store, client_id = set_up(database)
    pair = first_pair(store, client_id, KEEP)
    assert isinstance(
        anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 10, KEEP)), Issued
    )
    short = Policy(Lifetimes(refresh_idle_ttl=DAY), rotate=False, since=NOW + 15)
    kept = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 20, short))
    assert isinstance(kept, Issued) and kept.pair.refresh_expires_at == NOW + 20 + DAY
    row = refresh_row(store, pair.refresh_token)
    assert (row["issued_at"], row["expires_at"]) == (NOW + 20, NOW + 20 + DAY)
    anyio.run(store.close)


# -- a replay client's retry, whatever its history (re-review H1) ----------------------------------


def _lost_response_retry(store: SQLStore, client: Client) -> Any:
    """R0 refreshed for R1, R1 refreshed for R2, then R0 sent again inside its leeway (a
    response lost, retried late): all after the move, under `replay`."""
    t = CHANGED_AT + 10
    r0 = first_pair(store, client.id, client.policy.at(store.policy, t))
    r1 = exchange(store, r0.refresh_token, client, t + 10)
    exchange(store, r1.pair.refresh_token, client, t + 20)
    return exchange(store, r0.refresh_token, client, t + 30)


@pytest.mark.parametrize("history", ["never forked", "forked before"])
def test_a_replay_retry_is_answered_alike_with_or_without_fork_in_the_history(
    database: Path | str, history: str
) -> None:
    """A parent never forked from has one child: its retry is a retry (`Replayed`), for a
    client that never forked and one that had `fork` before these tokens were issued."""
    store, client_id = set_up(database)
    policy = (
        ClientPolicy().schedule(REPLAY, CHANGED_AT, CHANGED_AT)
        if history == "never forked"
        else forked_then(REPLAY)
    )
    client = give_policy(store, client_id, policy)
    assert isinstance(_lost_response_retry(store, client), Replayed)
    anyio.run(store.close)


def test_a_report_only_fork_trial_changes_nothing(database: Path | str) -> None:
    """Report-only never refuses: a `fork` trial pending beside `replay` leaves its answers."""
    store, client_id = set_up(database)
    trial = ClientPolicy().schedule(FORK, CHANGED_AT - 100, None, report_only=True)
    client = give_policy(store, client_id, trial)
    assert isinstance(_lost_response_retry(store, client), Replayed)
    anyio.run(store.close)
