"""Integration signals in the store (issue 28): a flush written, the health read back from it per
client (delays merged, live grants counted, the grants a report-only policy would break), the
purge past `--signal-retention`, and access tokens found by digest for `/token-use`."""

from __future__ import annotations

from pathlib import Path

import anyio
from sqlalchemy import func, select

from baton.core.pairs import MintedPair
from baton.core.policy import Lifetimes
from baton.core.rules import CodeRedemption
from baton.core.signals import OTHER_CLIENTS, Refusal, SignalKind, Source
from baton.core.tokens import TokenKind, digest, mint
from baton.core.vocabulary import RevocationCause
from baton.store.base import Issued, NewCode, SignalCount
from baton.store.schema import client_signals
from baton.store.sql import SQLStore
from tests.store.test_sql_store import ask_for, store_on
from tests.support import first_pair, refresh, register_client, register_user, running_app

NOW = 1_700_000_000
DAY = 86_400


def row(
    client_id: str,
    kind: SignalKind,
    at: int,
    count: int,
    delays: dict[int, int] | None = None,
    *,
    reason: Refusal | None = None,
    grant_id: str | None = None,
    source: Source = Source.TOKEN,
) -> SignalCount:
    return SignalCount(
        client_id=client_id,
        kind=kind,
        reason=reason,
        source=source,
        grant_id=grant_id,
        first_at=at - 5,
        last_at=at,
        count=count,
        delays=delays or {},
    )


def grant_of(store: SQLStore, client_id: str, *, now: int = NOW, code_life: int = 60) -> str:
    """A grant of `client_id` (through a code's redemption); returns its id."""
    code = mint(TokenKind.CODE)
    anyio.run(
        store.save_code,
        NewCode(code.digest, client_id, 1, None, "read", None, now, now + code_life),
    )
    result = anyio.run(
        store.redeem_code,
        code.digest,
        CodeRedemption(client_id, None, None),
        MintedPair.new(),
        now,
        None,
    )
    assert isinstance(result, Issued)
    return result.pair.grant_id


def test_a_clients_health_merges_its_rows_and_counts_its_live_grants(
    database: Path | str,
) -> None:
    store = store_on(database)
    register_user(store)
    bad, good = register_client(store).id, register_client(store).id
    live = [grant_of(store, bad) for _ in range(3)]
    anyio.run(store.revoke_grant, live[2], NOW, RevocationCause.REVOKED)  # no longer live
    anyio.run(
        store.record_signals,
        [
            # Two processes' flushes of the same kind: counts add up, delays merge.
            row(bad, SignalKind.STALE_ACCESS, NOW + 10, 2, {120: 2}, source=Source.RESOURCE),
            row(bad, SignalKind.STALE_ACCESS, NOW + 20, 3, {5: 1, 120: 2}),
            row(
                bad,
                SignalKind.WOULD_REFUSE,
                NOW + 15,
                2,
                {120: 2},
                reason=Refusal.LEEWAY,
                grant_id=live[0],
            ),
            row(
                bad,
                SignalKind.WOULD_REFUSE,
                NOW + 16,
                1,
                {130: 1},
                reason=Refusal.LEEWAY,
                grant_id=live[0],
            ),
            row(bad, SignalKind.WOULD_REFUSE, NOW + 17, 1, reason=Refusal.PKCE),  # no grant
            row(bad, SignalKind.LEEWAY_RETRY, NOW - 2 * DAY, 7, {1: 7}),  # before the window
        ],
    )
    anyio.run(store.record_signals, [])  # an empty flush writes nothing, and does not fail

    (health,) = anyio.run(store.client_health, [bad], NOW - DAY, NOW + 30)
    assert health.client_id == bad and health.since == NOW - DAY
    stale = health.tally(SignalKind.STALE_ACCESS)
    assert (stale.count, stale.last_at, stale.delays) == (5, NOW + 20, {5: 1, 120: 4})
    assert (stale.p50, stale.p95) == (120, 120)
    refused = health.tally(SignalKind.WOULD_REFUSE)
    assert (refused.count, refused.last_at) == (4, NOW + 17)
    assert health.refusals[Refusal.LEEWAY].count == 3
    assert health.refusals[Refusal.PKCE].count == 1
    assert health.tally(SignalKind.LEEWAY_RETRY).count == 0  # outside the window
    assert health.active_grants == 2  # the revoked one is not live
    assert health.grants_breaking == 1 and health.breaking_share == 0.5
    assert stale.grants == set()  # only the report-only refusals count grants

    # Every client with a signal in the window (by id), and none without.
    everyone = anyio.run(store.client_health, None, NOW - DAY, NOW + 30)
    assert [h.client_id for h in everyone] == [bad]
    # A client asked for by name gets its health even without a signal, in the order asked.
    asked = anyio.run(store.client_health, [good, bad, good], NOW - DAY, NOW + 30)
    assert [h.client_id for h in asked] == [good, bad]
    assert asked[0].tallies == {} and asked[0].active_grants == 0
    # Grants past their absolute lifetime at `now` are not live.
    (later,) = anyio.run(store.client_health, [bad], NOW - DAY, NOW + 400 * DAY)
    assert later.active_grants == 0
    anyio.run(store.close)


def test_signals_are_purged_after_their_retention_in_bounded_batches(
    database: Path | str,
) -> None:
    store = store_on(database)
    register_user(store)
    client = register_client(store).id
    anyio.run(
        store.record_signals,
        # five hours: five rows (a flush merges into the row of its hour)
        [row(client, SignalKind.REUSE, NOW - 31 * DAY + i * 3600, 1) for i in range(5)]
        + [row(client, SignalKind.REUSE, NOW - 29 * DAY, 1)],
    )

    def remaining() -> int:
        query = select(func.count()).select_from(client_signals)
        return int(anyio.run(store.inspect, lambda conn: conn.execute(query).scalar_one()))

    assert anyio.run(store.purge_signals, NOW, 30 * DAY, 2) == 2
    assert anyio.run(store.purge_signals, NOW, 30 * DAY, 2) == 2
    assert anyio.run(store.purge_signals, NOW, 30 * DAY, 2) == 1
    assert anyio.run(store.purge_signals, NOW, 30 * DAY, 2) == 0
    assert remaining() == 1  # the one seen 29 days ago stays
    # The tokens' purge leaves signals alone: they have a retention of their own.
    anyio.run(store.purge, NOW + 100 * DAY, 0)
    assert remaining() == 1
    anyio.run(store.close)


def test_access_tokens_are_found_by_digest_with_their_companions_exchange(
    database: Path | str,
) -> None:
    store = store_on(database)
    register_user(store)
    client = register_client(store).id
    code = mint(TokenKind.CODE)
    anyio.run(store.save_code, NewCode(code.digest, client, 1, None, "read", None, NOW, NOW + 60))
    first = MintedPair.new()
    redeemed = anyio.run(
        store.redeem_code, code.digest, CodeRedemption(client, None, None), first, NOW, None
    )
    assert isinstance(redeemed, Issued) and redeemed.pair.refresh_token is not None
    key = digest(redeemed.pair.access_token)
    before = anyio.run(store.access_by_digest, [key])
    companion = before[key].companion
    assert companion is not None and companion.exchanged_at is None

    exchanged = anyio.run(store.exchange, ask_for(redeemed.pair.refresh_token, client, NOW + 100))
    assert isinstance(exchanged, Issued)
    newer = digest(exchanged.pair.access_token)
    unknown = digest("bat_at_no-such-token")
    found = anyio.run(store.access_by_digest, [key, key, unknown, newer])
    assert set(found) == {key, newer}
    old = found[key]
    assert old.jti == first.jti and old.grant.client_id == client
    assert old.companion is not None and old.companion.exchanged_at == NOW + 100
    fresh = found[newer].companion
    assert fresh is not None and fresh.exchanged_at is None
    assert anyio.run(store.access_by_digest, []) == {}
    anyio.run(store.close)


def test_flushes_merge_into_one_row_per_hour_and_only_refusals_keep_their_grant(
    database: Path | str,
) -> None:
    """Review finding (issue 28): a row per client, kind, reason, source and grant for each
    flush of each process made the table (and every health read) grow with the traffic. Rows
    are merged per hour; only `would_refuse` keeps its grant (what `breaking_share` counts)."""
    store = store_on(database)
    register_user(store)
    client = register_client(store).id
    hour = NOW - NOW % 3600
    for flush_at in (hour + 10, hour + 20, hour + 3599):  # three flushes in one hour
        anyio.run(
            store.record_signals,
            [
                row(client, SignalKind.STALE_ACCESS, flush_at, 2, {5: 2}, grant_id=f"g{flush_at}"),
                row(client, SignalKind.STALE_ACCESS, flush_at, 1, {7: 1}, grant_id="other"),
                row(
                    client,
                    SignalKind.WOULD_REFUSE,
                    flush_at,
                    1,
                    {90: 1},
                    reason=Refusal.LEEWAY,
                    grant_id=f"g{flush_at % 2}",
                ),
            ],
        )
    anyio.run(store.record_signals, [row(client, SignalKind.STALE_ACCESS, hour + 3600, 1, {9: 1})])

    stored = anyio.run(
        store.inspect,
        lambda conn: conn.execute(
            select(
                client_signals.c.kind, client_signals.c.grant_id, client_signals.c.count
            ).order_by(client_signals.c.bucket, client_signals.c.kind, client_signals.c.grant_id)
        ).all(),
    )
    assert [tuple(r) for r in stored] == [
        ("stale_access", "", 9),  # the grants of stale uses are not kept
        ("would_refuse", "", 0),  # the refusals' delays, apart from their grants
        ("would_refuse", "g0", 2),
        ("would_refuse", "g1", 1),
        ("stale_access", "", 1),  # the next hour
    ]
    (health,) = anyio.run(store.client_health, [client], NOW - DAY, hour + 3600)
    stale = health.tally(SignalKind.STALE_ACCESS)
    assert (stale.count, stale.last_at, stale.delays) == (10, hour + 3600, {5: 6, 7: 3, 9: 1})
    refused = health.refusals[Refusal.LEEWAY]
    assert (refused.count, refused.delays, refused.distinct_grants) == (3, {90: 3}, 2)
    assert health.grants_breaking == 2
    anyio.run(store.close)


def test_grants_whose_refresh_tokens_idled_out_are_not_active(database: Path | str) -> None:
    """Review finding (issue 28): a grant whose refresh token idled out can never refresh again,
    yet it counted in `active_grants`, the denominator of `breaking_share`."""
    lifetimes = Lifetimes(access_ttl=60, refresh_idle_ttl=600, refresh_absolute_ttl=365 * DAY)
    with running_app(database, lifetimes=lifetimes) as (http, store, clock):
        register_user(store)
        client = register_client(store)
        pairs = [first_pair(http, client) for _ in range(3)]
        refresh(http, client, pairs[0]["refresh_token"])  # its successor is live
        (health,) = anyio.run(store.client_health, [client.id], clock.now() - DAY, clock.now())
        assert health.active_grants == 3
        clock.advance(3600)  # every refresh token idled out an hour ago
        assert refresh(http, client, pairs[1]["refresh_token"]).status_code == 400
        (health,) = anyio.run(store.client_health, [client.id], clock.now() - DAY, clock.now())
        assert health.active_grants == 0


def test_refusals_that_name_no_grant_give_no_share(database: Path | str) -> None:
    """A grant type or PKCE refusal comes before any grant exists: the share of grants says
    nothing about it, and reads None ("n/a") rather than 0%."""
    store = store_on(database)
    register_user(store)
    client = register_client(store).id
    grant_of(store, client)
    anyio.run(
        store.record_signals, [row(client, SignalKind.WOULD_REFUSE, NOW, 3, reason=Refusal.PKCE)]
    )
    (health,) = anyio.run(store.client_health, [client], NOW - DAY, NOW + 30)
    assert health.active_grants == 1 and health.grants_breaking == 0
    assert health.breaking_share is None
    anyio.run(store.close)


def test_the_metrics_series_rank_the_top_clients_in_sql_and_sum_the_others(
    database: Path | str,
) -> None:
    store = store_on(database)
    register_user(store)
    a, b, c = (register_client(store).id for _ in range(3))
    grants_of = {name: [grant_of(store, name) for _ in range(n)] for name, n in ((a, 4), (c, 2))}
    anyio.run(
        store.record_signals,
        [
            row(a, SignalKind.REUSE, NOW, 1),
            row(b, SignalKind.REUSE, NOW, 100),
            row(b, SignalKind.STALE_ACCESS, NOW, 4, {20: 3, 40: 1}),
            row(c, SignalKind.REUSE, NOW, 5, {3: 5}),
            row(c, SignalKind.STALE_ACCESS, NOW, 1, {50: 1}),
            row(
                a,
                SignalKind.WOULD_REFUSE,
                NOW,
                1,
                {9: 1},
                reason=Refusal.IDLE,
                grant_id=grants_of[a][0],
            ),
            *(
                row(c, SignalKind.WOULD_REFUSE, NOW, 1, reason=Refusal.IDLE, grant_id=g)
                for g in grants_of[c]
            ),
            row(a, SignalKind.LATE_REFRESH, NOW - 2 * DAY, 999),  # outside the window
        ],
    )
    series = anyio.run(store.client_series, NOW - DAY, NOW + 30, 1)
    assert [h.client_id for h in series] == [b, OTHER_CLIENTS]
    top, other = series
    assert top.tally(SignalKind.STALE_ACCESS).p50 == 20  # the top clients' delays are merged
    assert other.tally(SignalKind.REUSE).count == 6
    assert other.tally(SignalKind.LATE_REFRESH).count == 0
    assert other.refusals[Refusal.IDLE].count == 3
    assert other.tally(SignalKind.STALE_ACCESS).delays == {}  # not the others'
    # a: 1 of its 4 live grants; c: both of its 2: 3 of 6.
    assert (other.grants_breaking, other.active_grants) == (3, 6)
    assert other.breaking_share == 0.5
    assert [h.client_id for h in anyio.run(store.client_series, NOW - DAY, NOW, 5)] == [b, c, a]
    assert anyio.run(store.client_series, NOW - DAY, NOW, 0)[0].client_id == OTHER_CLIENTS
    anyio.run(store.close)
