"""The store under a client's policy (issue 28): the policy in force the caller gives decides
the exchange and is stamped on the rows; the facts the signals need are written and read back.

Each test runs on SQLite and on PostgreSQL (the `database` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import Connection, select

from baton.core.facts import AccessFacts, RefreshFacts
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.rules import CodeRedemption, Reason
from baton.core.seal import seal
from baton.core.signals import Refusal, SignalKind
from baton.core.tokens import TokenKind, digest, mint
from baton.store.base import ExchangeAsk, Issued, NewCode, Refused, Replayed
from baton.store.schema import refresh_tokens
from baton.store.sql import SQLStore
from tests.support import migrated_store, register_client, register_user

NOW = 1_700_000_000
SERVER = Policy()  # replay, 600 s leeway, 1 h access tokens, 90 d idle
CLIENT_60 = Policy(Lifetimes(leeway=60, access_ttl=300), since=NOW - 10)


def store_on(database: Path | str, policy: Policy | None = None) -> SQLStore:
    return migrated_store(database / "baton.db" if isinstance(database, Path) else database, policy)


def first_pair(store: SQLStore, client_id: str, policy: Policy | None = None) -> IssuedPair:
    code = mint(TokenKind.CODE)
    new_code = NewCode(code.digest, client_id, 1, None, "read", None, NOW, NOW + 60)
    anyio.run(store.save_code, new_code)
    ask = CodeRedemption(client_id, None, None)
    result = anyio.run(store.redeem_code, code.digest, ask, MintedPair.new(), NOW, None, policy)
    assert isinstance(result, Issued)
    return result.pair


def ask_for(
    token: str | None,
    client_id: str,
    now: int,
    policy: Policy | None = None,
    shadow: Policy | None = None,
) -> ExchangeAsk:
    assert token is not None
    token_digest = digest(token)
    retry = (policy or SERVER).retry
    return ExchangeAsk(
        digest=token_digest,
        client_id=client_id,
        scope=None,
        now=now,
        source_address=None,
        child=MintedPair.new(),
        seal=(lambda payload: seal(token, token_digest, payload))
        if retry is RetryPolicy.REPLAY
        else None,
        policy=policy,
        shadow=shadow,
    )


def refresh_row(store: SQLStore, token: str | None) -> dict[str, Any]:
    assert token is not None

    def work(conn: Connection) -> dict[str, Any]:
        row = conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.digest == digest(token))
        ).mappings()
        return dict(row.one())

    return anyio.run(store.inspect, work)


def facts(store: SQLStore, token: str | None, of: Callable[..., Any]) -> Any:
    assert token is not None
    return anyio.run(store.inspect, lambda conn: of(conn, digest(token)))


def set_up(database: Path | str) -> tuple[SQLStore, str]:
    store = store_on(database)
    register_user(store)
    return store, register_client(store).id


def test_the_companion_exp_is_written_with_each_pair_and_read_back(database: Path | str) -> None:
    from baton.store.sql import lifecycle

    store, client_id = set_up(database)
    pair = first_pair(store, client_id)
    assert refresh_row(store, pair.refresh_token)["access_expires_at"] == NOW + 3600
    found = facts(store, pair.refresh_token, lifecycle.refresh_facts)
    assert isinstance(found, RefreshFacts) and found.access_expires_at == NOW + 3600
    child = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 100))
    assert isinstance(child, Issued)
    assert refresh_row(store, child.pair.refresh_token)["access_expires_at"] == NOW + 3700
    anyio.run(store.close)


def test_an_access_token_knows_when_its_companion_was_exchanged(database: Path | str) -> None:
    from baton.store.sql import lifecycle

    store, client_id = set_up(database)
    pair = first_pair(store, client_id)
    before = facts(store, pair.access_token, lifecycle.access_facts)
    assert isinstance(before, AccessFacts) and before.companion is not None
    assert before.companion.exchanged_at is None
    anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 100))
    after = facts(store, pair.access_token, lifecycle.access_facts)
    assert isinstance(after, AccessFacts) and after.companion is not None
    assert after.companion.exchanged_at == NOW + 100
    assert after.companion.retire_at == NOW + 700
    anyio.run(store.close)


def test_the_clients_policy_decides_and_its_leeway_is_stamped(database: Path | str) -> None:
    from baton.store.sql import lifecycle

    store, client_id = set_up(database)
    pair = first_pair(store, client_id, CLIENT_60)
    # The first pair's lifetimes are the client's: a 300 s access token.
    assert pair.access_expires_at == NOW + 300
    child = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 100, CLIENT_60))
    assert isinstance(child, Issued)
    assert child.pair.access_expires_at == NOW + 400
    assert refresh_row(store, pair.refresh_token)["retire_at"] == NOW + 160
    old = facts(store, pair.access_token, lifecycle.access_facts)
    assert old.companion.retire_at == NOW + 160
    # A retry inside the client's leeway is replayed; after it, it is reuse (the server's own
    # 600 s leeway would still have honoured it).
    again = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 159, CLIENT_60))
    assert isinstance(again, Replayed)
    late = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 161, CLIENT_60))
    assert isinstance(late, Refused) and late.reason is Reason.REUSED and late.revoked_grant
    anyio.run(store.close)


def test_without_a_policy_the_stores_own_decides(database: Path | str) -> None:
    store, client_id = set_up(database)
    pair = first_pair(store, client_id)
    anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 100))
    assert refresh_row(store, pair.refresh_token)["retire_at"] == NOW + 700
    anyio.run(store.close)


def test_a_policy_in_force_after_the_grant_caps_the_new_pair(database: Path | str) -> None:
    store, client_id = set_up(database)
    pair = first_pair(store, client_id)  # a 365-day grant under the server's policy
    capped = Policy(Lifetimes(refresh_absolute_ttl=1000), since=NOW + 50)
    child = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 100, capped))
    assert isinstance(child, Issued)
    # Neither token of the new pair outlives the grant's capped end, though nothing is written.
    assert child.pair.refresh_expires_at == NOW + 1000
    assert child.pair.access_expires_at == NOW + 1000
    refused = anyio.run(
        store.exchange, ask_for(child.pair.refresh_token, client_id, NOW + 1000, capped)
    )
    assert isinstance(refused, Refused) and refused.reason is Reason.ABSOLUTE_EXPIRED
    anyio.run(store.close)


def test_a_kept_refresh_token_is_not_exchanged_and_slides(database: Path | str) -> None:
    from baton.store.sql import lifecycle

    store, client_id = set_up(database)
    keep = Policy(Lifetimes(refresh_idle_ttl=5000, refresh_absolute_ttl=10_000), rotate=False)
    pair = first_pair(store, client_id, keep)
    assert pair.refresh_expires_at == NOW + 5000
    result = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 4000, keep))
    assert isinstance(result, Issued) and result.kept
    # The store never held the plaintext: the caller answers with the presented token.
    assert result.pair.refresh_token is None
    assert result.pair.refresh_expires_at == NOW + 9000
    assert result.pair.access_token != pair.access_token
    row = refresh_row(store, pair.refresh_token)
    assert row["exchanged_at"] is None and row["retire_at"] is None
    assert row["sealed_response"] is None
    assert (row["issued_at"], row["expires_at"]) == (NOW + 4000, NOW + 9000)
    assert row["access_expires_at"] == result.pair.access_expires_at == NOW + 4000 + 3600
    # Both access tokens have the same companion, which was never exchanged.
    new = facts(store, result.pair.access_token, lifecycle.access_facts)
    old = facts(store, pair.access_token, lifecycle.access_facts)
    assert new.companion == old.companion and old.companion.exchanged_at is None
    # Used again much later (no reuse detection, no leeway): it slides again, to the grant's end.
    again = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 8000, keep))
    assert isinstance(again, Issued) and again.kept
    assert again.pair.refresh_expires_at == again.pair.access_expires_at == NOW + 10_000
    anyio.run(store.close)


def test_a_kept_refresh_token_revoked_meanwhile_is_refused(database: Path | str) -> None:
    store, client_id = set_up(database)
    keep = Policy(rotate=False)
    pair = first_pair(store, client_id, keep)
    client = anyio.run(store.get_client, client_id)
    assert client is not None
    assert pair.refresh_token is not None
    outcome = anyio.run(store.revoke_token, client, digest(pair.refresh_token), True, NOW + 1)
    assert outcome == "grant"
    result = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 2, keep))
    assert isinstance(result, Refused) and result.reason is Reason.REVOKED
    anyio.run(store.close)


def test_the_results_carry_the_exchanges_signals(database: Path | str) -> None:
    store, client_id = set_up(database)
    pair = first_pair(store, client_id)
    shadow = Policy(Lifetimes(leeway=60))
    # A refresh 30 s after its access token expired: a late refresh.
    late = anyio.run(
        store.exchange, ask_for(pair.refresh_token, client_id, NOW + 3630, shadow=shadow)
    )
    assert isinstance(late, Issued)
    assert [(s.kind, s.delay) for s in late.signals] == [(SignalKind.LATE_REFRESH, 30)]
    assert late.signals[0].client_id == client_id
    assert late.signals[0].grant_id == pair.grant_id
    # A retry 120 s after the exchange: inside the leeway in force, past the report-only one.
    retry = anyio.run(
        store.exchange, ask_for(pair.refresh_token, client_id, NOW + 3750, shadow=shadow)
    )
    assert isinstance(retry, Replayed)
    assert [(s.kind, s.reason, s.delay) for s in retry.signals] == [
        (SignalKind.LEEWAY_RETRY, None, 120),
        (SignalKind.WOULD_REFUSE, Refusal.LEEWAY, 120),
    ]
    reuse = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 4230))
    assert isinstance(reuse, Refused)
    assert [(s.kind, s.delay) for s in reuse.signals] == [(SignalKind.REUSE, 600)]
    # Another client's token says nothing about anyone (rule 7).
    other = register_client(store).id
    foreign = anyio.run(store.exchange, ask_for(pair.refresh_token, other, NOW + 4231))
    assert isinstance(foreign, Refused) and foreign.signals == ()
    anyio.run(store.close)


def test_fork_lineage_follows_the_clients_policy(database: Path | str) -> None:
    store, client_id = set_up(database)
    fork = Policy(retry=RetryPolicy.FORK)
    pair = first_pair(store, client_id, fork)
    one = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 10, fork))
    two = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, NOW + 11, fork))
    assert isinstance(one, Issued) and isinstance(two, Issued) and two.retry
    # The first sibling refreshed claims the family; the other one is then reuse (rule 3b),
    # which only the lineage read under `fork` can tell.
    on = anyio.run(store.exchange, ask_for(one.pair.refresh_token, client_id, NOW + 20, fork))
    assert isinstance(on, Issued)
    other = anyio.run(store.exchange, ask_for(two.pair.refresh_token, client_id, NOW + 21, fork))
    assert isinstance(other, Refused) and other.reason is Reason.SIBLING_CONTINUED
    anyio.run(store.close)


def test_client_credentials_take_the_clients_lifetimes(database: Path | str) -> None:
    store, client_id = set_up(database)
    short = Policy(Lifetimes(access_ttl=120))
    issued = anyio.run(
        lambda: store.issue_client_credentials(
            client_id, "read", MintedPair.new(False), NOW, (), policy=short
        )
    )
    assert issued.access_expires_at == NOW + 120
    assert replace(issued, access_token="").refresh_token is None
    anyio.run(store.close)
