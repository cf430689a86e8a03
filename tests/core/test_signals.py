"""The signals' arithmetic (issue 28): delays counted in buckets, their percentiles, and the
integration health summed from counted rows, whatever order the rows come in."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.client_policy import PolicySettings
from baton.core.facts import AccessFacts, CompanionFacts, GrantFacts, RefreshFacts
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.registration import GRANT_TYPES
from baton.core.rules import Reason, Reject, Replay, Reuse, decide_refresh
from baton.core.signals import (
    GRANTLESS,
    Health,
    Refusal,
    SignalKind,
    Source,
    Tally,
    access_signals,
    delay_bucket,
    exchange_signals,
    grant_type_signal,
    percentile,
    pkce_signal,
)

T0 = 1_700_000_000
CLIENT = "cl_signals"
SEALED = b"\x00" * 12 + b"sealed child pair"

delays = st.dictionaries(st.integers(0, 100_000), st.integers(1, 50), max_size=30)
# Quantiles as the report asks them, and a few others written as decimals.
quantiles = st.sampled_from(["0.01", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99", "1"])


# -- percentile ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(delays, quantiles)
def test_percentile_is_the_nearest_rank_of_every_observation(
    counted: dict[int, int], q: str
) -> None:
    observations = sorted(d for d, n in counted.items() for _ in range(n))
    got = percentile(counted, float(q))
    if not observations:
        assert got is None
        return
    # Nearest rank: the ceil(q * N)-th smallest observation (1-based).
    rank = max(1, math.ceil(Fraction(q) * len(observations)))
    assert got == observations[rank - 1]


@settings(max_examples=100, deadline=None)
@given(delays, quantiles, quantiles)
def test_percentile_grows_with_the_quantile(counted: dict[int, int], a: str, b: str) -> None:
    low, high = sorted([Fraction(a), Fraction(b)])
    p, r = percentile(counted, float(low)), percentile(counted, float(high))
    assert (p is None) == (r is None) == (not counted)
    if p is not None and r is not None:
        assert min(counted) <= p <= r <= max(counted)
        assert percentile(counted, 1.0) == max(counted)


# -- delay buckets ---------------------------------------------------------------------------------

seconds = st.integers(-100, 400 * 86_400)


@settings(max_examples=300, deadline=None)
@given(seconds, seconds)
def test_delay_buckets_keep_the_order_of_delays(a: int, b: int) -> None:
    if a <= b:
        assert delay_bucket(a) <= delay_bucket(b)
    bucket = delay_bucket(a)
    assert delay_bucket(bucket) == bucket  # a bucket is its own bucket
    assert 0 <= bucket <= max(a, 0)
    if a <= 600:
        assert bucket == max(a, 0)  # a leeway's range counted to the second
    elif a <= 3_600:
        assert a - bucket < 10
    else:
        assert a - bucket < 60


def test_delay_buckets_are_few() -> None:
    # To the second up to ten minutes, to 10 s up to an hour, then to the minute: a day of
    # delays falls in at most 601 + 300 + 1380 buckets.
    day = {delay_bucket(s) for s in range(86_400 + 1)}
    assert len(day) <= 601 + 300 + (86_400 - 3_600) // 60 + 1
    assert {delay_bucket(s) for s in range(601)} == set(range(601))


# -- tallies and health, summed in any order -------------------------------------------------------

grant_ids = st.sets(st.sampled_from([f"grt_{i}" for i in range(8)]), max_size=4)
row_delays = st.dictionaries(st.integers(0, 5_000), st.integers(1, 50), max_size=6)
rows = st.tuples(st.integers(1, 100), st.integers(T0, T0 + 86_400), row_delays, grant_ids)
Row = tuple[int, int, dict[int, int], set[str]]  # count, last_at, delays, grants: one stored row
HealthRow = tuple[SignalKind, Refusal | None, Row]


def tally_of(batch: list[Row]) -> Tally:
    tally = Tally()
    for count, last_at, counted, grants in batch:
        tally.add(count, last_at, counted, grants)
    return tally


@settings(max_examples=100, deadline=None)
@given(st.lists(rows, max_size=8).flatmap(lambda b: st.tuples(st.just(b), st.permutations(b))))
def test_a_tally_is_the_same_whatever_order_its_rows_come_in(
    batches: tuple[list[Row], list[Row]],
) -> None:
    one, other = (tally_of(b) for b in batches)
    assert one == other
    assert one.to_json() == other.to_json()
    rows_in = batches[0]
    assert one.count == sum(r[0] for r in rows_in)
    assert one.last_at == (max(r[1] for r in rows_in) if rows_in else None)
    assert sum(one.delays.values()) == sum(sum(r[2].values()) for r in rows_in)


health_rows = st.tuples(
    st.sampled_from(list(SignalKind)),
    st.none() | st.sampled_from(list(Refusal)),
    rows,
).map(
    # Only `would_refuse` rows carry a reason.
    lambda r: (r[0], r[1] if r[0] is SignalKind.WOULD_REFUSE else None, r[2])
)


def health_of(batch: list[HealthRow], active: int) -> Health:
    health = Health(CLIENT, T0, active_grants=active)
    for kind, reason, (count, last_at, counted, grants) in batch:
        health.add(kind, reason, count, last_at, counted, grants)
    return health


@settings(max_examples=100, deadline=None)
@given(
    st.lists(health_rows, max_size=10).flatmap(lambda b: st.tuples(st.just(b), st.permutations(b))),
    st.integers(0, 10),
)
def test_health_is_the_same_whatever_order_its_rows_come_in(
    batches: tuple[list[HealthRow], list[HealthRow]], active: int
) -> None:
    one, other = (health_of(b, active) for b in batches)
    assert one.to_json() == other.to_json()
    assert one.tallies == other.tallies and one.refusals == other.refusals
    batch = batches[0]
    refused = [r for r in batch if r[0] is SignalKind.WOULD_REFUSE]
    assert one.affected == bool(refused)
    # The refusals by rule add up to the `would_refuse` rows that name a rule.
    assert sum(t.count for t in one.refusals.values()) == sum(
        r[2][0] for r in refused if r[1] is not None
    )
    touched = set().union(*(r[2][3] for r in refused)) if refused else set()
    assert one.grants_breaking == len(touched)
    share = one.breaking_share
    if share is None:
        # No grant at all, or only refusals that name none (grant type, PKCE): no share.
        grantless = any(r[1] in GRANTLESS and r[2][0] for r in refused)
        assert not touched and (active == 0 or grantless)
    else:
        assert 0 <= share <= 1


# -- what the signals say --------------------------------------------------------------------------


def grant(**changes: object) -> GrantFacts:
    base = GrantFacts("grt_1", CLIENT, 1, "alice", "read", T0, T0 + 10_000, None, None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_retry_on_a_grant_past_the_shadow_absolute_lifetime_would_be_refused() -> None:
    # Found by tests/core/test_client_policy.py: under the report-only policy the grant is
    # past its absolute lifetime, so the retry would be refused (ABSOLUTE_EXPIRED, decided
    # before the leeway), though the retry is inside the shadow's leeway.
    token = RefreshFacts(1, grant(), 0, T0, T0 + 5_000, T0 + 1_500, T0 + 2_100, None, SEALED)
    shadow = Policy(Lifetimes(refresh_absolute_ttl=1_000, leeway=60), since=T0 + 1_510)
    now = T0 + 1_510
    in_force = Policy()
    decision = decide_refresh(token, CLIENT, now, in_force)
    assert decision == Replay(SEALED)
    assert decide_refresh(token, CLIENT, now, shadow) == Reject(Reason.ABSOLUTE_EXPIRED)
    signals = exchange_signals(token, decision, now, shadow)
    assert [(s.kind, s.reason) for s in signals] == [
        (SignalKind.LEEWAY_RETRY, None),
        (SignalKind.WOULD_REFUSE, Refusal.ABSOLUTE),
    ]


def test_a_refusal_or_an_unknown_token_says_nothing_of_the_shadow() -> None:
    token = RefreshFacts(1, grant(), 0, T0, T0 + 100, None, None, None, None)
    strict = Policy(Lifetimes(refresh_idle_ttl=1), RetryPolicy.STRICT, since=T0 + 50)
    assert exchange_signals(None, Reject(Reason.UNKNOWN), T0 + 50, strict) == ()
    assert exchange_signals(token, Reject(Reason.IDLE_EXPIRED), T0 + 200, strict) == ()
    reuse = exchange_signals(token, Reuse(), T0 + 50, strict)
    assert [s.kind for s in reuse] == [SignalKind.REUSE]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 1_000),
    st.integers(0, 1_000),
    st.integers(1, 2_000),
    st.none() | st.integers(0, 1_000),
    st.none() | st.integers(1, 2_000),
    st.sampled_from(list(Source)),
)
def test_access_signals_report_a_stale_use_once_and_refuse_at_most_once(
    exchanged: int,
    used: int,
    ttl: int,
    shadow_leeway: int | None,
    shadow_ttl: int | None,
    source: Source,
) -> None:
    access = AccessFacts(
        1,
        grant(),
        0,
        "read",
        T0,
        T0 + ttl,
        None,
        CompanionFacts(T0 + exchanged + 600, None, T0 + exchanged),
    )
    shadow = None
    if shadow_leeway is not None or shadow_ttl is not None:
        shadow = Policy(
            Lifetimes(access_ttl=shadow_ttl or 3_600, leeway=shadow_leeway or 0), since=T0
        )
    now = T0 + exchanged + used
    signals = access_signals(access, now, shadow, source)
    assert all(s.source is source and s.client_id == CLIENT for s in signals)
    stale = [s for s in signals if s.kind is SignalKind.STALE_ACCESS]
    assert [s.delay for s in stale] == [used]
    refusals = [s for s in signals if s.kind is SignalKind.WOULD_REFUSE]
    assert len(refusals) <= 1
    if shadow is None:
        assert refusals == []


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(GRANT_TYPES),
    st.none() | st.lists(st.sampled_from(GRANT_TYPES), unique=True).map(tuple),
    st.booleans(),
    st.none() | st.booleans(),
)
def test_grant_type_and_pkce_signals_follow_the_shadow_settings(
    grant_type: str, allowed: tuple[str, ...] | None, has_challenge: bool, pkce: bool | None
) -> None:
    shadow = PolicySettings(grant_types=allowed, require_pkce=pkce)
    got = grant_type_signal(CLIENT, grant_type, shadow, T0, Source.TOKEN)
    assert (got is not None) == (allowed is not None and grant_type not in allowed)
    assert got is None or got.reason is Refusal.GRANT_TYPE
    assert grant_type_signal(CLIENT, grant_type, None, T0, Source.TOKEN) is None
    need = pkce_signal(CLIENT, has_challenge, shadow, T0)
    assert (need is not None) == (bool(pkce) and not has_challenge)
    assert need is None or (need.reason is Refusal.PKCE and need.source is Source.AUTHORIZE)
    assert pkce_signal(CLIENT, has_challenge, None, T0) is None
