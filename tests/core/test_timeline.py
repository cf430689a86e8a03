"""The timeline model: each pair's life from issue to death, as the rules decide it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core import rules
from baton.core.clock import FakeClock
from baton.core.facts import GrantFacts
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.timeline import (
    AccessRecord,
    EventRecord,
    Kind,
    RefreshRecord,
    Timeline,
    _access_at,
    _refresh_at,
    build,
)
from baton.core.vocabulary import RevocationCause

T0 = 1_700_000_000
LEEWAY = 600
ACCESS_TTL = 3600
IDLE = 90 * 86_400


def grant(revoked_at: int | None = None, reason: str | None = None) -> GrantFacts:
    return GrantFacts(
        "grt_1", "cl_1", 1, "alice", "read", T0, T0 + 365 * 86_400, revoked_at, reason
    )


@dataclass
class Family:
    """A grant's facts, written the way the store writes them, under a fake clock."""

    clock: FakeClock
    leeway: int = LEEWAY
    access_ttl: int = ACCESS_TTL
    idle: int = IDLE
    refresh: list[RefreshRecord] = field(default_factory=list)
    access: list[AccessRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    revoked: tuple[int, str] | None = None

    def issue(self, parent: RefreshRecord | None = None) -> RefreshRecord:
        now = self.clock.now()
        token = RefreshRecord(
            id=len(self.refresh) + 1,
            parent_id=parent.id if parent else None,
            generation=parent.generation + 1 if parent else 0,
            issued_at=now,
            expires_at=now + self.idle,
            exchanged_at=None,
            retire_at=None,
            revoked_at=None,
        )
        self.refresh.append(token)
        expires = min(now + self.access_ttl, token.expires_at)
        self.access.append(AccessRecord(token.generation, token.id, now, expires, None))
        return token

    def rotate(self, token: RefreshRecord) -> RefreshRecord:
        now = self.clock.now()
        exchanged = replace(token, exchanged_at=now, retire_at=now + self.leeway)
        self.refresh[token.id - 1] = exchanged
        return self.issue(exchanged)

    def retry(self, token: RefreshRecord) -> None:
        self.events.append(EventRecord("leeway_retry", token.generation, self.clock.now(), "r"))

    def reuse(self, token: RefreshRecord) -> None:
        now = self.clock.now()
        self.events.append(EventRecord("refresh_token_reuse", token.generation, now, "stolen"))
        self.revoked = (now, RevocationCause.REUSE)

    def policy(self, retry: RetryPolicy = RetryPolicy.REPLAY) -> Policy:
        """The policy in force, as the rules and the timeline take it."""
        lifetimes = Lifetimes(
            access_ttl=self.access_ttl, refresh_idle_ttl=self.idle, leeway=self.leeway
        )
        return Policy(lifetimes, retry)

    def timeline(self, retry: RetryPolicy = RetryPolicy.REPLAY) -> Timeline:
        g = grant(*self.revoked) if self.revoked else grant()
        return build(
            g,
            self.refresh,
            self.access,
            self.events,
            now=self.clock.now(),
            policy=self.policy(retry),
        )


def demo_family() -> Family:
    """Login, rotations, a lost response retried in the leeway, a stolen token replayed."""
    family = Family(FakeClock(T0))
    gen0 = family.issue()
    family.clock.advance(1200)
    gen1 = family.rotate(gen0)
    family.clock.advance(1200)
    gen2 = family.rotate(gen1)
    family.clock.advance(60)
    family.retry(gen1)  # the response was lost: the client retried inside the leeway
    family.clock.advance(1140)
    family.rotate(gen2)
    family.clock.advance(900)
    family.reuse(gen1)  # a stolen copy of gen 1, long after its leeway
    return family


def test_each_pair_dies_when_its_leeway_ends_and_the_last_with_the_family() -> None:
    timeline = demo_family().timeline()
    lives = [
        (b.generation, b.refresh.start - T0, b.refresh.end - T0) for b in timeline.bars if b.refresh
    ]
    assert lives == [(0, 0, 1800), (1, 1200, 3000), (2, 2400, 4200), (3, 3600, 4500)]
    causes = [b.refresh.cause for b in timeline.bars if b.refresh]
    assert causes[:3] == ["leeway ended after the exchange"] * 3
    assert causes[3] == "grant revoked: reuse detected"
    # The access tokens die with their refresh tokens' leeway, long before their own expiry.
    access = [(b.access.end - T0, b.access.cause) for b in timeline.bars if b.access]
    assert access[0] == (1800, "its refresh token's leeway ended")
    assert access[3] == (4500, "grant revoked: reuse detected")


def test_exchanges_leeways_retries_and_the_reuse_are_marked_on_their_pair() -> None:
    timeline = demo_family().timeline()
    gen1 = timeline.bars[1]
    assert gen1.leeway is not None
    assert (gen1.leeway.start - T0, gen1.leeway.end - T0) == (2400, 3000)
    kinds = [(m.kind, m.at - T0) for m in gen1.marks]
    assert kinds == [(Kind.EXCHANGE, 2400), (Kind.RETRY, 2460), (Kind.REUSE, 4500)]
    assert timeline.bars[3].leeway is None  # never exchanged
    assert [(m.kind, m.at - T0) for m in timeline.marks] == [(Kind.REVOKED, 4500)]
    assert timeline.status == "revoked (reuse)"
    assert (timeline.start, timeline.end) == (T0, T0 + 4500)


def test_under_strict_the_old_pair_dies_at_the_exchange() -> None:
    family = Family(FakeClock(T0), leeway=0)
    gen0 = family.issue()
    family.clock.advance(100)
    family.rotate(gen0)
    timeline = family.timeline(RetryPolicy.STRICT)
    first = timeline.bars[0]
    assert first.refresh is not None and first.access is not None
    assert first.refresh.end == first.access.end == T0 + 100
    assert first.refresh.cause == "exchanged (no leeway)"
    assert first.access.cause == "its refresh token's leeway ended"
    assert first.leeway is None


def test_a_live_grant_reaches_to_now_and_its_far_expiry_is_cut_off() -> None:
    family = Family(FakeClock(T0))
    gen0 = family.issue()
    family.clock.advance(300)
    family.rotate(gen0)
    family.clock.advance(60)
    timeline = family.timeline()
    current = timeline.bars[1]
    assert current.refresh is not None and current.refresh.end == T0 + 300 + IDLE
    # The picture ends at the last near death: the current access token's expiry.
    assert timeline.end == T0 + 300 + ACCESS_TTL
    assert timeline.status == "active"


def test_a_revocation_inside_the_leeway_ends_the_leeway_there() -> None:
    family = Family(FakeClock(T0))
    gen0 = family.issue()
    family.clock.advance(100)
    family.rotate(gen0)
    family.clock.advance(200)
    family.revoked = (family.clock.now(), "revoked")
    timeline = family.timeline()
    leeway = timeline.bars[0].leeway
    assert leeway is not None and leeway.end == T0 + 300
    assert leeway.cause == "grant revoked (revoked)"
    assert [m.kind for m in timeline.marks] == [Kind.REVOKED]


# -- a property: the bars agree with the rules at every second -------------------------------------

Step = tuple[str, int]
steps = st.lists(
    st.tuples(st.sampled_from(["rotate", "revoke", "wait"]), st.integers(0, 9)),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(steps, st.sampled_from([RetryPolicy.REPLAY, RetryPolicy.STRICT]))
def test_every_bar_is_live_exactly_when_the_rules_honour_its_token(
    script: list[Step], retry: RetryPolicy
) -> None:
    leeway = 0 if retry is RetryPolicy.STRICT else 5
    family = Family(FakeClock(T0), leeway=leeway, access_ttl=7, idle=15)
    current = family.issue()
    for action, wait in script:
        family.clock.advance(wait)
        if family.revoked is not None:
            continue
        if action == "rotate" and family.clock.now() < current.expires_at:
            current = family.rotate(current)
        elif action == "revoke":
            family.revoked = (family.clock.now(), "revoked")
    timeline = family.timeline(retry)
    policy = family.policy(retry)
    g = grant(*family.revoked) if family.revoked else grant()
    horizon = family.clock.now() + 30
    by_id = {r.id: r for r in family.refresh}
    for bar, token in zip(timeline.bars, sorted(family.refresh, key=lambda r: r.id), strict=True):
        assert bar.refresh is not None and bar.access is not None
        for t in range(token.issued_at, horizon):
            honoured = rules.refresh_liveness(_refresh_at(g, token, t), t, policy).active
            assert bar.refresh.live_at(t) == honoured, (t - T0, bar)
            a = next(x for x in family.access if x.refresh_id == token.id)
            live = rules.access_liveness(_access_at(g, a, by_id[token.id], t), t).active
            assert bar.access.live_at(t) == live, (t - T0, bar)
        if bar.leeway is not None:
            assert bar.refresh.start <= bar.leeway.start < bar.leeway.end == bar.refresh.end
    for mark in timeline.all_marks:
        assert timeline.start <= mark.at <= timeline.end
