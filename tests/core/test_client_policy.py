"""A client's policy over time (issue 28), checked against reference models.

1. `ClientPolicy` under any sequence of schedules, cancels and the passing of time answers what a
   tiny model of its docstrings says: the version in force is the newest dated one at or before
   the instant; the pending one is the undated or future one, at most one, replaced by the next
   schedule; every version that has been in force is kept (the newest `MAX_VERSIONS`, the
   pending one among them); `at` resolves every knob over the server's policy, `since` being the
   in-force version's `effective_at`, with one cap per stretch of time a version was in force;
   its stored form reads back as itself.
2. Under any sequence of policy changes, the liveness the rules report for every token is the one
   issue 28's decided semantics imply: access tokens keep their `exp`, a running leeway keeps its
   end, and a refresh token (a grant) is ended at the first instant a version in force then,
   dated after the token's birth, had its idle (absolute) lifetime over, and stays ended whatever
   version follows; otherwise it is judged by its stamps, never extended. And `decide_refresh`
   honours exactly the tokens `refresh_liveness` calls live.
3. Report-only never refuses: the decisions are those of the same policy without its pending
   change, and the signals say `would_refuse` exactly when the pending policy, had it been in
   force from now, would have refused: with its own leeway promised at the exchange and its
   access lifetime stamped at the issue, and its caps on the tokens issued before it (over the
   caps of the versions in force before it).

The models are written from the issue and the docstrings, not from the rules: where they part,
the test fails with the smallest sequence of changes that shows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core import client_policy as client_policy_module
from baton.core.client_policy import (
    MAX_VERSIONS,
    NO_POLICY,
    NO_SETTINGS,
    ClientPolicy,
    PolicyError,
    PolicySettings,
)
from baton.core.facts import AccessFacts, CompanionFacts, GrantFacts, RefreshFacts
from baton.core.policy import Cap, Lifetimes, Policy, RetryPolicy
from baton.core.registration import GRANT_TYPES
from baton.core.rules import (
    Fork,
    Reason,
    RefreshDecision,
    Reject,
    Replay,
    Rotate,
    access_liveness,
    decide_refresh,
    refresh_liveness,
)
from baton.core.signals import (
    Refusal,
    SignalKind,
    Source,
    access_signals,
    exchange_signals,
)

T0 = 1_700_000_000
CLIENT = "cl_policy"
SEALED = b"\x00" * 12 + b"sealed child pair"

# Lifetimes short enough that tokens die, leeways end and versions take effect within a few
# hundred seconds of one run.
lifetime = st.integers(1, 2_000)
leeway = st.integers(0, 400)
retry = st.sampled_from(list(RetryPolicy))

servers = st.builds(
    lambda access, idle, absolute, lee, rp, rotate: Policy(
        Lifetimes(access, idle, absolute, lee), rp, rotate
    ),
    lifetime,
    lifetime,
    st.integers(1, 5_000),
    leeway,
    retry,
    st.booleans(),
)

policy_settings = st.builds(
    PolicySettings,
    access_ttl=st.none() | lifetime,
    refresh_idle_ttl=st.none() | lifetime,
    refresh_absolute_ttl=st.none() | st.integers(1, 5_000),
    leeway=st.none() | leeway,
    retry=st.none() | retry,
    rotate=st.none() | st.booleans(),
    grant_types=st.none() | st.lists(st.sampled_from(GRANT_TYPES), unique=True).map(tuple),
    require_pkce=st.none() | st.booleans(),
)


# -- operations on a client's policy ---------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    change: PolicySettings
    when: int | None  # seconds from now (negative: in the past), None: undated
    report_only: bool
    replace_all: bool


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Advance:
    seconds: int


schedules = st.builds(
    Schedule,
    policy_settings,
    st.none() | st.integers(-300, 600) | st.just(0),
    st.booleans(),
    st.booleans(),
)
policy_ops = st.lists(
    st.one_of(schedules, st.just(Cancel()), st.builds(Advance, st.integers(0, 400))),
    max_size=12,
)


# -- the reference model of a client's policy (from `ClientPolicy`'s docstrings) -------------------


@dataclass
class Version:
    effective_at: int | None
    settings: PolicySettings
    report_only: bool
    scheduled_at: int


@dataclass
class PolicyModel:
    """The versions that came into force, in order, and the one pending change; the client keeps
    the newest `limit` of them, the pending one among them (`MAX_VERSIONS`)."""

    now: int
    limit: int = MAX_VERSIONS
    history: list[Version] = field(default_factory=list)
    pending: Version | None = None

    def forget(self) -> None:
        """Past the limit, the oldest versions that came into force are forgotten."""
        room = self.limit - (1 if self.pending is not None else 0)
        del self.history[: max(0, len(self.history) - room)]

    def promote(self) -> None:
        """A dated pending change whose instant has come is the version in force."""
        p = self.pending
        if p is not None and p.effective_at is not None and p.effective_at <= self.now:
            self.history.append(p)
            self.pending = None

    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.promote()

    def in_force(self, at: int) -> Version | None:
        """The newest dated version at or before `at` (`at` >= now: the pending one may be it)."""
        p = self.pending
        if p is not None and p.effective_at is not None and p.effective_at <= at:
            return p
        candidates = [
            v for v in self.history if v.effective_at is not None and v.effective_at <= at
        ]
        return candidates[-1] if candidates else None

    def pending_at(self, at: int) -> Version | None:
        p = self.pending
        if p is not None and (p.effective_at is None or p.effective_at > at):
            return p
        return None

    def schedule(self, op: Schedule) -> None:
        """Raises `PolicyError` (and changes nothing) for an undated change that is enforced,
        and for a report-only change dated now or before."""
        self.promote()
        effective_at = None if op.when is None else max(self.now, self.now + op.when)
        if effective_at is None and not op.report_only:
            raise PolicyError("undated and enforced")
        if effective_at == self.now and op.report_only:
            # A report-only change dated now or before would be enforced at once: refused.
            raise PolicyError("report-only, dated now or before")
        current = self.in_force(self.now)
        base = NO_SETTINGS if current is None else current.settings
        new = op.change if op.replace_all else op.change.over(base)
        if effective_at == self.now:
            self.history.append(Version(self.now, new, False, self.now))
            self.pending = None
        else:
            self.pending = Version(effective_at, new, op.report_only, self.now)
        self.forget()

    def kept(self) -> list[Version]:
        """The versions the client holds, in the order they were scheduled."""
        return self.history + ([] if self.pending is None else [self.pending])

    def dated(self, at: int) -> list[tuple[int, PolicySettings]]:
        """(effective_at, settings) of every version in force by `at` (the pending one too, once
        its instant has come), in the order they came into force."""
        return [
            (v.effective_at, v.settings)
            for v in self.kept()
            if v.effective_at is not None and v.effective_at <= at
        ]

    def cancel(self) -> None:
        self.promote()
        self.pending = None


def resolved(server: Policy, settings: PolicySettings, since: int | None) -> Policy:
    """Every knob of `settings` over the server's, written out knob by knob."""

    def knob(name: str) -> int:
        value = getattr(settings, name)
        return int(getattr(server.lifetimes, name) if value is None else value)

    return Policy(
        Lifetimes(
            access_ttl=knob("access_ttl"),
            refresh_idle_ttl=knob("refresh_idle_ttl"),
            refresh_absolute_ttl=knob("refresh_absolute_ttl"),
            leeway=knob("leeway"),
            code_ttl=server.lifetimes.code_ttl,
        ),
        retry=server.retry if settings.retry is None else settings.retry,
        rotate=server.rotate if settings.rotate is None else settings.rotate,
        since=since,
    )


def expected_caps(server: Policy, dated: list[tuple[int, PolicySettings]]) -> tuple[Cap, ...]:
    """One cap per stretch of time a version was in force: from its `effective_at` to the next
    version's (the last one open), with its resolved refresh lifetimes. A version replaced in the
    second it took effect was never in force: no cap."""
    caps = []
    for i, (start, chosen) in enumerate(dated):
        end = dated[i + 1][0] if i + 1 < len(dated) else None
        if end == start:
            continue
        life = resolved(server, chosen, None).lifetimes
        caps.append(Cap(start, end, life.refresh_idle_ttl, life.refresh_absolute_ttl))
    return tuple(caps)


def expected_at(model: PolicyModel, server: Policy, at: int) -> Policy:
    version = model.in_force(at)
    if version is None:
        return server
    return dataclasses.replace(
        resolved(server, version.settings, version.effective_at),
        caps=expected_caps(server, model.dated(at)),
    )


def expected_shadow(model: PolicyModel, server: Policy, at: int) -> Policy | None:
    """The report-only change as if in force from `at`, after the versions in force by then."""
    pending = model.pending_at(at)
    if pending is None or not pending.report_only:
        return None
    return dataclasses.replace(
        resolved(server, pending.settings, at),
        caps=expected_caps(server, [*model.dated(at), (at, pending.settings)]),
    )


@contextmanager
def versions_kept(limit: int) -> Iterator[None]:
    """`ClientPolicy` keeping `limit` versions: a few operations reach the limit."""
    with mock.patch.object(client_policy_module, "MAX_VERSIONS", limit):
        yield


# The real limit, and small ones that a dozen operations pass.
limits = st.sampled_from([MAX_VERSIONS, 2, 3])


def apply(
    policy: ClientPolicy, model: PolicyModel, op: Schedule | Cancel | Advance
) -> ClientPolicy:
    """One operation on both the code and the model."""
    if isinstance(op, Advance):
        model.advance(op.seconds)
        return policy
    if isinstance(op, Cancel):
        model.cancel()
        return policy.cancel(model.now)
    effective_at = None if op.when is None else model.now + op.when
    try:
        model.schedule(op)
    except PolicyError:
        with pytest.raises(PolicyError):
            policy.schedule(
                op.change, model.now, effective_at, op.report_only, replace_all=op.replace_all
            )
        return policy
    return policy.schedule(
        op.change, model.now, effective_at, op.report_only, replace_all=op.replace_all
    )


def probes(model: PolicyModel) -> list[int]:
    """Instants worth asking about from now on: now, and around the pending change."""
    out = [model.now, model.now + 1]
    if model.pending is not None and model.pending.effective_at is not None:
        eff = model.pending.effective_at
        out += [eff - 1, eff, eff + 1]
    return out


@settings(max_examples=150, deadline=None)
@given(servers, policy_ops, limits)
def test_client_policy_answers_what_its_versions_say(
    server: Policy, ops: list[Schedule | Cancel | Advance], limit: int
) -> None:
    policy, model = NO_POLICY, PolicyModel(T0, limit)
    for op in ops:
        with versions_kept(limit):
            policy = apply(policy, model, op)
        for at in probes(model):
            version = model.in_force(at)
            assert policy.settings_at(at) == (NO_SETTINGS if version is None else version.settings)
            pending = model.pending_at(at)
            got = policy.pending(at)
            if pending is None:
                assert got is None
            else:
                assert got is not None
                assert (got.effective_at, got.settings, got.report_only, got.scheduled_at) == (
                    pending.effective_at,
                    pending.settings,
                    pending.report_only,
                    pending.scheduled_at,
                )
            shadow = pending.settings if pending is not None and pending.report_only else None
            assert policy.shadow(at) == shadow
            assert policy.at(server, at) == expected_at(model, server, at)
            assert policy.shadow_policy(server, at) == expected_shadow(model, server, at)
        # At most one pending change, and every version that came into force is kept, the
        # newest `limit` with the pending one: exactly the model's.
        assert (
            sum(1 for v in policy.versions if v.effective_at is None or v.effective_at > model.now)
            <= 1
        )
        assert [
            (v.effective_at, v.settings, v.report_only, v.scheduled_at) for v in policy.versions
        ] == [(v.effective_at, v.settings, v.report_only, v.scheduled_at) for v in model.kept()]
        assert len(policy.versions) <= limit
        # Stored as one JSON text, read back as itself.
        assert ClientPolicy.from_stored(policy.stored()) == policy
        assert (policy.stored() is None) == (not policy.versions)


@settings(max_examples=100, deadline=None)
@given(policy_settings)
def test_settings_read_back_from_json(value: PolicySettings) -> None:
    assert PolicySettings.from_json(value.to_json()) == value
    assert value.empty == (value.to_json() == {})


@settings(max_examples=100, deadline=None)
@given(policy_settings, policy_settings)
def test_over_keeps_every_knob_set_and_fills_the_rest(a: PolicySettings, b: PolicySettings) -> None:
    merged = a.over(b)
    for f in dataclasses.fields(PolicySettings):
        mine = getattr(a, f.name)
        assert getattr(merged, f.name) == (getattr(b, f.name) if mine is None else mine)


# -- tokens out there, under any sequence of policy changes ----------------------------------------


@dataclass
class Token:
    """One pair as the store holds it: refresh facts, and its companion access token."""

    grant: int  # index into World.grants
    issued_at: int
    refresh_exp: int
    access_exp: int
    exchanged_at: int | None = None
    retire_at: int | None = None
    sealed: bytes | None = None


@dataclass
class World:
    server: Policy
    limit: int = MAX_VERSIONS
    policy: ClientPolicy = NO_POLICY
    model: PolicyModel = field(init=False)
    grants: list[GrantFacts] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model = PolicyModel(T0, self.limit)

    @property
    def now(self) -> int:
        return self.model.now

    def in_force(self) -> Policy:
        return self.policy.at(self.server, self.now)

    def refresh(self, i: int) -> RefreshFacts:
        t = self.tokens[i]
        return RefreshFacts(
            id=i + 1,
            grant=self.grants[t.grant],
            generation=0,
            issued_at=t.issued_at,
            expires_at=t.refresh_exp,
            exchanged_at=t.exchanged_at,
            retire_at=t.retire_at,
            revoked_at=None,
            sealed_response=t.sealed,
            access_expires_at=t.access_exp,
        )

    def access(self, i: int) -> AccessFacts:
        t = self.tokens[i]
        return AccessFacts(
            id=i + 1,
            grant=self.grants[t.grant],
            generation=0,
            scope="read",
            issued_at=t.issued_at,
            expires_at=t.access_exp,
            revoked_at=None,
            companion=CompanionFacts(t.retire_at, None, t.exchanged_at),
        )

    def issue_pair(self, grant: int) -> None:
        """A pair issued now under the policy in force (`Policy.pair_expiries`, as the store)."""
        access_exp, refresh_exp = self.in_force().pair_expiries(
            self.now, self.grants[grant].expires_at
        )
        self.tokens.append(Token(grant, self.now, refresh_exp, access_exp))

    def new_grant(self) -> None:
        policy = self.in_force()
        self.grants.append(
            GrantFacts(
                id=f"grt_{len(self.grants)}",
                client_id=CLIENT,
                user_id=1,
                subject="alice",
                scope="read",
                created_at=self.now,
                expires_at=policy.grant_expiry(self.now),
                revoked_at=None,
                revoked_reason=None,
            )
        )
        self.issue_pair(len(self.grants) - 1)

    def exchange(self, i: int) -> None:
        """The token presented now: when it rotates, the leeway in force is promised."""
        policy = self.in_force()
        if not isinstance(decide_refresh(self.refresh(i), CLIENT, self.now, policy), Rotate):
            return
        t = self.tokens[i]
        t.exchanged_at, t.retire_at = self.now, self.now + policy.leeway
        t.sealed = SEALED if policy.leeway > 0 else None
        self.issue_pair(t.grant)

    def boundaries(self) -> list[int]:
        """Instants where something ends or begins: stamps, caps, the pending change."""
        out: set[int] = set()
        for t in self.tokens:
            g = self.grants[t.grant]
            out |= {t.refresh_exp, t.access_exp, g.expires_at}
            if t.retire_at is not None:
                out.add(t.retire_at)
            for v in self.model.kept():
                s = resolved(self.server, v.settings, v.effective_at).lifetimes
                out |= {t.issued_at + s.refresh_idle_ttl, g.created_at + s.refresh_absolute_ttl}
        p = self.model.pending
        if p is not None and p.effective_at is not None:
            out.add(p.effective_at)
        return sorted(x for x in out if x > self.now)


# The decided semantics (issue 28), written from the issue rather than from the rules.


def model_deadline(
    server: Policy, dated: list[tuple[int, PolicySettings]], born: int, own: int, knob: str
) -> int:
    """When a token (a grant) born at `born`, whose stamps end it at `own`, stops being honoured,
    the versions `dated` having come into force in that order (the last one lasting): at the
    first instant the version in force then came into force after `born` and had the token's
    lifetime (`knob`) over, counted from `born`; ended, it stays ended, whatever version follows.
    Never later than `own`: a change never extends a token."""

    def in_force(u: int) -> tuple[int, PolicySettings] | None:
        then = [d for d in dated if d[0] <= u]
        return then[-1] if then else None

    def lifetime(settings: PolicySettings) -> int:
        return int(getattr(resolved(server, settings, None).lifetimes, knob))

    def over(u: int) -> bool:
        version = in_force(u)
        return version is not None and version[0] > born and u >= born + lifetime(version[1])

    # `over` changes only where a version comes into force or a lifetime under one ends: the
    # first instant it holds is one of those.
    instants = {start for start, _ in dated} | {born + lifetime(s) for _, s in dated}
    return min([own, *(u for u in instants if u < own and over(u))])


def model_grant_deadline(
    world: World, grant: GrantFacts, dated: list[tuple[int, PolicySettings]]
) -> int:
    return model_deadline(
        world.server, dated, grant.created_at, grant.expires_at, "refresh_absolute_ttl"
    )


def model_idle_deadline(world: World, t: Token, dated: list[tuple[int, PolicySettings]]) -> int:
    return model_deadline(world.server, dated, t.issued_at, t.refresh_exp, "refresh_idle_ttl")


def model_refresh_live(world: World, i: int) -> bool:
    t = world.tokens[i]
    now = world.now
    dated = world.model.dated(now)
    if now >= model_grant_deadline(world, world.grants[t.grant], dated):
        return False
    if t.exchanged_at is not None:
        assert t.retire_at is not None
        return now < t.retire_at  # the leeway promised at the exchange, whatever came since
    return now < model_idle_deadline(world, t, dated)


def model_access_live(world: World, i: int) -> bool:
    """An access token keeps its `exp` and its companion's promised leeway end; no policy
    change shortens it."""
    t = world.tokens[i]
    now = world.now
    if now >= t.access_exp or now >= world.grants[t.grant].expires_at:
        return False
    return t.retire_at is None or now < t.retire_at


@dataclass(frozen=True)
class NewGrant:
    pass


@dataclass(frozen=True)
class Refresh:
    token: int


@dataclass(frozen=True)
class ToBoundary:
    pick: int
    offset: int  # -1, 0, +1 around the instant


# Report-only changes are what signals are about: most changes here are report-only, often
# undated (so they stay pending while tokens come and go).
tightenings = st.builds(
    PolicySettings,
    access_ttl=st.none() | st.integers(1, 200),
    refresh_idle_ttl=st.none() | st.integers(1, 300),
    refresh_absolute_ttl=st.none() | st.integers(1, 600),
    leeway=st.none() | st.integers(0, 60),
    retry=st.none() | retry,
)
report_only_schedules = st.builds(
    Schedule,
    tightenings,
    st.none() | st.integers(1, 2_000),
    st.just(True),
    st.booleans(),
)

# A change the instant something ends: where a stretch of time a version was in force ends just
# as a token's lifetime under it would have (stretches are half-open: the token lives).
changes_at_boundaries = st.tuples(
    st.builds(ToBoundary, st.integers(0, 1_000), st.just(0)),
    st.builds(Schedule, policy_settings, st.integers(-300, 0), st.booleans(), st.booleans()),
)

world_ops = st.lists(
    st.one_of(
        schedules,
        report_only_schedules,
        report_only_schedules,
        st.just(Cancel()),
        st.builds(Advance, st.integers(0, 400)),
        st.just(NewGrant()),
        st.builds(Refresh, st.integers(0, 40)),
        st.builds(ToBoundary, st.integers(0, 1_000), st.sampled_from([-1, 0, 1])),
        changes_at_boundaries,
    ),
    min_size=4,
    max_size=25,
)


def run(world: World, op: object) -> None:
    if isinstance(op, NewGrant):
        world.new_grant()
    elif isinstance(op, Refresh):
        if world.tokens:
            world.exchange(op.token % len(world.tokens))
    elif isinstance(op, ToBoundary):
        instants = world.boundaries()
        if instants:
            target = instants[op.pick % len(instants)] + op.offset
            if target > world.now:
                world.model.advance(target - world.now)
    else:
        assert isinstance(op, Schedule | Cancel | Advance)
        world.policy = apply(world.policy, world.model, op)


HONOURED = (Rotate, Replay, Fork)


def refusal_under(shadow: Policy, token: RefreshFacts, now: int) -> Refusal | None:
    """What the shadow policy, had it been in force, would have refused of this presentation:
    its own leeway promised at the exchange, its caps on tokens issued before it."""
    if token.exchanged_at is not None:
        token = dataclasses.replace(token, retire_at=token.exchanged_at + shadow.leeway)
    decision = decide_refresh(token, CLIENT, now, shadow)
    if isinstance(decision, HONOURED):
        return None
    if decision == Reject(Reason.ABSOLUTE_EXPIRED):
        return Refusal.ABSOLUTE
    if decision == Reject(Reason.IDLE_EXPIRED):
        return Refusal.IDLE
    assert token.exchanged_at is not None, decision
    return Refusal.STRICT if shadow.retry is RetryPolicy.STRICT else Refusal.LEEWAY


def access_refusal_under(shadow: Policy, token: AccessFacts, now: int) -> Refusal | None:
    """What the shadow policy would have refused of this access-token use: a token stamped
    with its access lifetime, a companion retired at the end of its leeway."""
    companion = token.companion
    assert companion is not None
    if companion.exchanged_at is not None and now >= companion.exchanged_at + shadow.leeway:
        return Refusal.LEEWAY
    if now >= token.issued_at + shadow.lifetimes.access_ttl:
        return Refusal.ACCESS_TTL
    return None


def check_world(world: World) -> None:
    now, policy = world.now, world.in_force()
    assert policy == expected_at(world.model, world.server, now)
    shadow = world.policy.shadow_policy(world.server, now)
    assert shadow == expected_shadow(world.model, world.server, now)
    without_pending = world.policy.cancel(now).at(world.server, now)
    dated = world.model.dated(now)
    pending = world.model.pending
    # The report-only change as if in force from now, after the versions in force before it.
    shadow_dated = None if shadow is None or pending is None else [*dated, (now, pending.settings)]
    for i in range(len(world.tokens)):
        token, access = world.refresh(i), world.access(i)
        # Every cap a version in force put on the token and its grant, as the model says (the
        # report-only change's too, as if in force from now).
        t, g = world.tokens[i], world.grants[world.tokens[i].grant]
        for judge, versions in ((policy, dated), (shadow, shadow_dated)):
            if judge is None or versions is None:
                continue
            assert judge.grant_deadline(g.created_at, g.expires_at) == model_grant_deadline(
                world, g, versions
            ), (i, t, g, versions)
            assert judge.refresh_deadline(t.issued_at, t.refresh_exp) == model_idle_deadline(
                world, t, versions
            ), (i, t, versions)
        live = refresh_liveness(token, now, policy)
        assert live.active == model_refresh_live(world, i), (i, world.tokens[i])
        decision = decide_refresh(token, CLIENT, now, policy)
        assert isinstance(decision, HONOURED) == live.active, (decision, live)
        # Report-only never refuses: the pending change takes no part in the decision.
        assert decision == decide_refresh(token, CLIENT, now, without_pending)
        alive = access_liveness(access, now)
        assert alive.active == model_access_live(world, i), (i, world.tokens[i])
        # Introspection announces the promised death: the end of the leeway, when it comes
        # before the token's own `exp` (refresh: always, once exchanged).
        if live.active:
            assert live.revocation_at == t.retire_at
        if alive.active:
            early = t.retire_at is not None and t.retire_at < t.access_exp
            assert alive.revocation_at == (t.retire_at if early else None)
        check_exchange_signals(token, decision, now, shadow)
        if alive.active:
            check_access_signals(access, now, shadow)


def check_exchange_signals(
    token: RefreshFacts, decision: RefreshDecision, now: int, shadow: Policy | None
) -> None:
    signals = exchange_signals(token, decision, now, shadow, token.access_expires_at)
    kinds = [s.kind for s in signals]
    refusals = [s.reason for s in signals if s.kind is SignalKind.WOULD_REFUSE]
    assert all(s.client_id == CLIENT and s.source is Source.TOKEN for s in signals)
    assert (SignalKind.LEEWAY_RETRY in kinds) == isinstance(decision, Replay | Fork)
    late = isinstance(decision, Rotate) and now >= (token.access_expires_at or now + 1)
    assert (SignalKind.LATE_REFRESH in kinds) == late
    if shadow is None or not isinstance(decision, HONOURED):
        assert refusals == []  # refused already, or nothing to report on
        return
    expected = refusal_under(shadow, token, now)
    assert refusals == ([] if expected is None else [expected]), (token, decision, shadow)


def check_access_signals(access: AccessFacts, now: int, shadow: Policy | None) -> None:
    signals = access_signals(access, now, shadow, Source.INTROSPECTION)
    companion = access.companion
    assert companion is not None
    kinds = [s.kind for s in signals]
    assert (SignalKind.STALE_ACCESS in kinds) == (companion.exchanged_at is not None)
    refusals = [s.reason for s in signals if s.kind is SignalKind.WOULD_REFUSE]
    expected = None if shadow is None else access_refusal_under(shadow, access, now)
    assert refusals == ([] if expected is None else [expected]), (access, shadow)


@settings(max_examples=120, deadline=None)
@given(servers, world_ops, limits)
def test_liveness_is_what_the_policy_in_force_implies(
    server: Policy, ops: list[object], limit: int
) -> None:
    world = World(server, limit)
    world.new_grant()
    for op in ops:
        for step in op if isinstance(op, tuple) else (op,):
            with versions_kept(limit):
                run(world, step)
            check_world(world)


# -- findings: where the code and the decided semantics part (see the report) ----------------------


def test_a_version_dated_before_a_token_does_not_cap_it() -> None:
    # Stamped under a version, judged by its stamps while that version is in force.
    server = Policy(Lifetimes(refresh_idle_ttl=1_000))
    policy = NO_POLICY.schedule(PolicySettings(refresh_idle_ttl=100), T0, T0)
    in_force = policy.at(server, T0 + 50)
    _, refresh_exp = in_force.pair_expiries(T0 + 10, T0 + 10_000)
    assert refresh_exp == T0 + 110
    assert in_force.refresh_deadline(T0 + 10, refresh_exp) == T0 + 110


def test_a_refresh_token_a_policy_ended_stays_ended() -> None:
    # Found by the liveness property (issue 28): undoing a tightening revived the refresh tokens
    # and grants it had ended (introspection said inactive, then active).
    server = Policy(Lifetimes(refresh_idle_ttl=1_000, refresh_absolute_ttl=5_000))
    grant = GrantFacts("grt_1", CLIENT, 1, "alice", "read", T0, T0 + 5_000, None, None)
    token = RefreshFacts(1, grant, 0, T0, T0 + 1_000, None, None, None, None)
    # Tightened at T0 + 10: the token, issued before, is capped at T0 + 100.
    tight = NO_POLICY.schedule(PolicySettings(refresh_idle_ttl=100), T0 + 10, T0 + 10)
    assert not refresh_liveness(token, T0 + 200, tight.at(server, T0 + 200)).active
    assert decide_refresh(token, CLIENT, T0 + 200, tight.at(server, T0 + 200)) == Reject(
        Reason.IDLE_EXPIRED
    )
    # Back to the server's defaults at T0 + 300: the token refused at T0 + 200 stays refused.
    back = tight.schedule(NO_SETTINGS, T0 + 300, T0 + 300, replace_all=True)
    assert not refresh_liveness(token, T0 + 310, back.at(server, T0 + 310)).active
    assert decide_refresh(token, CLIENT, T0 + 310, back.at(server, T0 + 310)) == Reject(
        Reason.IDLE_EXPIRED
    )
    assert back.at(server, T0 + 310).refresh_deadline(T0, T0 + 1_000) == T0 + 100


def test_a_grant_a_policy_ended_stays_ended() -> None:
    server = Policy(Lifetimes(refresh_idle_ttl=1_000, refresh_absolute_ttl=5_000))
    grant = GrantFacts("grt_1", CLIENT, 1, "alice", "read", T0, T0 + 5_000, None, None)
    # A token of the grant issued after the tightening: only the grant's cap can end it.
    token = RefreshFacts(1, grant, 1, T0 + 150, T0 + 1_150, None, None, None, None)
    tight = NO_POLICY.schedule(PolicySettings(refresh_absolute_ttl=200), T0 + 100, T0 + 100)
    # Created before the tightening, the grant ends at T0 + 200 under it.
    assert refresh_liveness(token, T0 + 199, tight.at(server, T0 + 199)).active
    assert not refresh_liveness(token, T0 + 200, tight.at(server, T0 + 200)).active
    back = tight.schedule(NO_SETTINGS, T0 + 300, T0 + 300, replace_all=True)
    assert decide_refresh(token, CLIENT, T0 + 310, back.at(server, T0 + 310)) == Reject(
        Reason.ABSOLUTE_EXPIRED
    )


def test_a_tightening_undone_before_it_ended_a_token_leaves_it_be() -> None:
    # In force from T0 + 10 to T0 + 50, an idle lifetime of 100 would have ended the token (issued
    # at T0) at T0 + 100: undone before, it never did, and the token lives as stamped.
    server = Policy(Lifetimes(refresh_idle_ttl=1_000))
    grant = GrantFacts("grt_1", CLIENT, 1, "alice", "read", T0, T0 + 5_000, None, None)
    token = RefreshFacts(1, grant, 0, T0, T0 + 1_000, None, None, None, None)
    tight = NO_POLICY.schedule(PolicySettings(refresh_idle_ttl=100), T0 + 10, T0 + 10)
    back = tight.schedule(NO_SETTINGS, T0 + 50, T0 + 50, replace_all=True)
    assert back.at(server, T0 + 500).refresh_deadline(T0, T0 + 1_000) == T0 + 1_000
    assert refresh_liveness(token, T0 + 999, back.at(server, T0 + 999)).active
    assert not refresh_liveness(token, T0 + 1_000, back.at(server, T0 + 1_000)).active


def test_a_tightening_replaced_the_instant_it_would_end_a_token_leaves_it_be() -> None:
    # In force over [T0 + 10, T0 + 100): the idle lifetime of 100 would end the token at T0 +
    # 100, the instant the next version takes over; it never did.
    server = Policy(Lifetimes(refresh_idle_ttl=1_000))
    tight = NO_POLICY.schedule(PolicySettings(refresh_idle_ttl=100), T0 + 10, T0 + 10)
    assert tight.at(server, T0 + 99).refresh_deadline(T0, T0 + 1_000) == T0 + 100
    back = tight.schedule(PolicySettings(refresh_idle_ttl=500), T0 + 100, T0 + 100)
    # Now capped by the version in force from T0 + 100 only: at T0 + 500.
    assert back.at(server, T0 + 100).refresh_deadline(T0, T0 + 1_000) == T0 + 500


def test_past_the_versions_kept_the_oldest_cap_is_forgotten() -> None:
    # `MAX_VERSIONS`: the client keeps the newest versions; a token only the forgotten one had
    # ended is honoured again (the documented price of a bounded column).
    server = Policy(Lifetimes(refresh_idle_ttl=10_000, refresh_absolute_ttl=100_000))
    grant = GrantFacts("grt_1", CLIENT, 1, "alice", "read", T0, T0 + 100_000, None, None)
    token = RefreshFacts(1, grant, 0, T0, T0 + 10_000, None, None, None, None)
    policy = NO_POLICY.schedule(PolicySettings(refresh_idle_ttl=5), T0 + 1, T0 + 1)
    assert policy.at(server, T0 + 10).refresh_deadline(T0, T0 + 10_000) == T0 + 5
    for n in range(1, MAX_VERSIONS):
        policy = policy.schedule(NO_SETTINGS, T0 + 10 + n, T0 + 10 + n, replace_all=True)
    now = T0 + 10 + MAX_VERSIONS
    assert len(policy.versions) == MAX_VERSIONS
    assert not refresh_liveness(token, now, policy.at(server, now)).active
    policy = policy.schedule(NO_SETTINGS, now, now, replace_all=True)
    assert len(policy.versions) == MAX_VERSIONS
    assert policy.versions[0].effective_at == T0 + 11
    assert refresh_liveness(token, now, policy.at(server, now)).active


def test_a_pair_issued_under_a_shorter_absolute_lifetime_dies_with_its_grant() -> None:
    from baton.core.pairs import MintedPair, plan_pair

    server = Policy(Lifetimes(access_ttl=3_600, refresh_absolute_ttl=365 * 86_400))
    grant = GrantFacts("grt_1", CLIENT, 1, "alice", "read", T0, server.grant_expiry(T0), None, None)
    policy = NO_POLICY.schedule(PolicySettings(refresh_absolute_ttl=2_000), T0 + 1_000, T0 + 1_000)
    in_force = policy.at(server, T0 + 1_900)
    deadline = in_force.grant_deadline(grant.created_at, grant.expires_at)
    assert deadline == T0 + 2_000
    planned = plan_pair(grant, MintedPair.new(), 1, "read", T0 + 1_900, in_force)
    # Rule 2: an access token is never valid past the end of its companion's life.
    assert planned.issued.access_expires_at <= deadline
    assert planned.issued.refresh_expires_at is not None
    assert planned.issued.refresh_expires_at <= deadline


@st.composite
def any_refresh(draw: st.DrawFn) -> RefreshFacts:
    """Refresh facts in any combination the store can hold, lineage and revocations included."""
    created = T0 + draw(st.integers(0, 100))
    revoked = draw(st.none() | st.integers(created, created + 3_000))
    grant = GrantFacts(
        "grt_1",
        CLIENT,
        1,
        "alice",
        "read",
        created,
        created + draw(st.integers(1, 5_000)),
        revoked,
        None if revoked is None else draw(st.sampled_from(["reuse", "revoked", "logout"])),
    )
    issued = created + draw(st.integers(0, 1_000))
    exchanged = draw(st.none() | st.integers(issued, issued + 2_000))
    return RefreshFacts(
        id=5,
        grant=grant,
        generation=draw(st.integers(0, 3)),
        issued_at=issued,
        expires_at=issued + draw(st.integers(1, 2_000)),
        exchanged_at=exchanged,
        retire_at=None if exchanged is None else exchanged + draw(st.integers(0, 600)),
        revoked_at=draw(st.none() | st.integers(issued, issued + 3_000)),
        sealed_response=draw(st.none() | st.just(SEALED)),
        parent_id=draw(st.none() | st.just(4)),
        continued_id=draw(st.none() | st.just(6)),
        parent_continued_id=draw(st.none() | st.sampled_from([5, 7])),
    )


@st.composite
def refresh_and_caps(draw: st.DrawFn) -> tuple[RefreshFacts, tuple[Cap, ...]]:
    """Refresh facts, and caps as a client's versions give them: stretches one after the other,
    the last open, some ending the instant the token's (its grant's) lifetime under them ends."""
    token = draw(any_refresh())
    caps: list[Cap] = []
    born = draw(st.sampled_from([token.issued_at, token.grant.created_at]))
    start = draw(st.integers(born - 50, born + 300) | st.integers(T0, T0 + 3_000))
    for _ in range(draw(st.integers(0, 4))):
        end = start + draw(st.integers(1, 600))
        idle, absolute = draw(lifetime), draw(lifetime)
        if end > token.issued_at and draw(st.booleans()):
            idle = end - token.issued_at
        if end > token.grant.created_at and draw(st.booleans()):
            absolute = end - token.grant.created_at
        caps.append(Cap(start, end, idle, absolute))
        start = end
    if caps:
        caps[-1] = dataclasses.replace(caps[-1], end=None)
    return token, tuple(caps)


@settings(max_examples=200, deadline=None)
@given(
    refresh_and_caps(),
    servers,
    st.none() | st.integers(T0, T0 + 3_000),
    st.integers(T0, T0 + 6_000),
)
def test_a_refresh_token_is_honoured_exactly_when_it_is_live(
    drawn: tuple[RefreshFacts, tuple[Cap, ...]], server: Policy, since: int | None, now: int
) -> None:
    token, caps = drawn
    # A policy built alone with `since` (its own lifetimes cap from then on), or a client's
    # with the caps of its versions (`since`: the last one's start, as `ClientPolicy.at`).
    if caps:
        since = caps[-1].start
    policy = dataclasses.replace(server, since=since, caps=caps)
    life = server.lifetimes
    dated = [
        (
            c.start,
            PolicySettings(
                refresh_idle_ttl=c.refresh_idle_ttl, refresh_absolute_ttl=c.refresh_absolute_ttl
            ),
        )
        for c in caps
    ] or (
        []
        if since is None
        else [
            (
                since,
                PolicySettings(
                    refresh_idle_ttl=life.refresh_idle_ttl,
                    refresh_absolute_ttl=life.refresh_absolute_ttl,
                ),
            )
        ]
    )
    grant = token.grant
    assert policy.grant_deadline(grant.created_at, grant.expires_at) == model_deadline(
        server, dated, grant.created_at, grant.expires_at, "refresh_absolute_ttl"
    )
    assert policy.refresh_deadline(token.issued_at, token.expires_at) == model_deadline(
        server, dated, token.issued_at, token.expires_at, "refresh_idle_ttl"
    )
    live = refresh_liveness(token, now, policy)
    decision = decide_refresh(token, CLIENT, now, policy)
    assert isinstance(decision, HONOURED) == live.active, (decision, live)
    # Another client presenting it learns nothing and changes nothing (rule 7).
    assert decide_refresh(token, "cl_other", now, policy) == Reject(Reason.UNKNOWN)
