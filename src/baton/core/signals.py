"""What an integration does that a stricter policy would break: signals, as pure functions.

A *signal* is one observation about a client's integration, made where a decision is taken
(an exchange, an access-token check) or reported by a resource server (`baton.resource`):

- `stale_access`: an access token used after its companion refresh token was exchanged (the app
  kept the old pair), with how long after the exchange;
- `leeway_retry`: an exchanged refresh token presented again inside its leeway;
- `reuse`: an exchanged refresh token presented after it (the grant was revoked);
- `late_refresh`: a refresh that came after its access token had expired;
- `would_refuse`: what the client's report-only policy would have refused (`Refusal`).

The server counts them per client (`SignalBook` in the server, `client_signals` in the store)
and the integration health (`Health`) is computed from those counts: never from tokens, which no
signal holds. Every function here is pure: facts and an instant in, signals out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from baton.core.client_policy import PolicySettings
from baton.core.facts import AccessFacts, RefreshFacts
from baton.core.policy import Policy, RetryPolicy
from baton.core.rules import Fork, RefreshDecision, Replay, Reuse, Rotate


class SignalKind(StrEnum):
    """`client_signals.kind`, and the `kind` label of the per-client metrics."""

    STALE_ACCESS = "stale_access"
    LEEWAY_RETRY = "leeway_retry"
    REUSE = "reuse"
    LATE_REFRESH = "late_refresh"
    WOULD_REFUSE = "would_refuse"


class Refusal(StrEnum):
    """`client_signals.reason` of a `would_refuse` signal: which rule of the report-only policy
    would have refused the request."""

    LEEWAY = "leeway"  # an old access token, or a retry, after the shorter leeway
    STRICT = "strict"  # a retry inside the leeway, under `strict`
    ACCESS_TTL = "access_ttl"  # an access token older than the shorter access lifetime
    IDLE = "idle"  # a refresh token unused longer than the shorter idle lifetime
    ABSOLUTE = "absolute"  # a grant older than the shorter absolute lifetime
    GRANT_TYPE = "grant_type"  # a grant type the policy no longer allows
    PKCE = "pkce"  # an authorization request without PKCE


class Source(StrEnum):
    """`client_signals.source`: where the observation was made."""

    TOKEN = "token"  # the token endpoint (an exchange, a redemption)
    AUTHORIZE = "authorize"  # the authorization endpoint
    INTROSPECTION = "introspection"  # an access-token check at /introspect or /userinfo
    RESOURCE = "resource"  # a resource server's report (`baton.resource`)


@dataclass(frozen=True, slots=True)
class Signal:
    client_id: str
    kind: SignalKind
    at: int
    source: Source
    grant_id: str | None = None
    delay: int | None = None  # seconds: after the exchange, or after the access token's `exp`
    reason: Refusal | None = None  # `would_refuse` only


# -- at an exchange --------------------------------------------------------------------------------


def exchange_signals(
    token: RefreshFacts | None,
    decision: RefreshDecision,
    now: int,
    shadow: Policy | None,
    access_expires_at: int | None = None,
) -> tuple[Signal, ...]:
    """What a refresh decided under the policy in force says about its client, and what the
    report-only `shadow` policy would have refused. A refusal for an unknown token or another
    client's says nothing (rule 7)."""
    if token is None:
        return ()
    if (
        shadow is None
        and isinstance(decision, Rotate)
        and (access_expires_at is None or now < access_expires_at)
    ):
        return ()  # nearly every refresh: an exchange in time, with no report-only policy
    grant = token.grant
    client_id, grant_id = grant.client_id, grant.id
    out: list[Signal] = []

    def add(kind: SignalKind, delay: int | None, reason: Refusal | None = None) -> None:
        out.append(Signal(client_id, kind, now, Source.TOKEN, grant_id, delay, reason))

    exchanged_at = token.exchanged_at
    if isinstance(decision, Replay | Fork):
        assert exchanged_at is not None
        since = now - exchanged_at
        add(SignalKind.LEEWAY_RETRY, since)
        if shadow is not None:
            # In `decide_refresh`'s order: a grant past the shadow's absolute lifetime is
            # refused before any leeway is asked about.
            if now >= shadow.grant_deadline(grant.created_at, grant.expires_at):
                add(SignalKind.WOULD_REFUSE, now - grant.created_at, Refusal.ABSOLUTE)
            elif shadow.retry is RetryPolicy.STRICT:
                add(SignalKind.WOULD_REFUSE, since, Refusal.STRICT)
            elif since >= shadow.leeway:
                add(SignalKind.WOULD_REFUSE, since, Refusal.LEEWAY)
    elif isinstance(decision, Reuse):
        add(SignalKind.REUSE, None if exchanged_at is None else now - exchanged_at)
    elif isinstance(decision, Rotate):
        if access_expires_at is not None and now >= access_expires_at:
            add(SignalKind.LATE_REFRESH, now - access_expires_at)
        if shadow is not None:
            if now >= shadow.grant_deadline(grant.created_at, grant.expires_at):
                add(SignalKind.WOULD_REFUSE, now - grant.created_at, Refusal.ABSOLUTE)
            elif now >= shadow.refresh_deadline(token.issued_at, token.expires_at):
                add(SignalKind.WOULD_REFUSE, now - token.issued_at, Refusal.IDLE)
    return tuple(out)


# -- at an access-token check ----------------------------------------------------------------------


def access_signals(
    token: AccessFacts, now: int, shadow: Policy | None, source: Source
) -> tuple[Signal, ...]:
    """An access token live under the policy in force, used at `now`: a `stale_access` signal
    if its companion was already exchanged, and what the report-only `shadow` policy would have
    refused. The caller asks only for a token it found live."""
    grant = token.grant
    out: list[Signal] = []

    def add(kind: SignalKind, delay: int, reason: Refusal | None = None) -> None:
        out.append(Signal(grant.client_id, kind, now, source, grant.id, delay, reason))

    companion = token.companion
    exchanged_at = None if companion is None else companion.exchanged_at
    if exchanged_at is not None:
        since = max(0, now - exchanged_at)
        add(SignalKind.STALE_ACCESS, since)
        if shadow is not None and since >= shadow.leeway:
            add(SignalKind.WOULD_REFUSE, since, Refusal.LEEWAY)
            return tuple(out)
    if shadow is not None and now >= token.issued_at + shadow.lifetimes.access_ttl:
        add(SignalKind.WOULD_REFUSE, now - token.issued_at, Refusal.ACCESS_TTL)
    return tuple(out)


# -- at a request naming a grant type, or an authorization request ---------------------------------


def grant_type_signal(
    client_id: str, grant_type: str, shadow: PolicySettings | None, now: int, source: Source
) -> Signal | None:
    """A `would_refuse` signal when the report-only settings no longer allow `grant_type`."""
    if shadow is None or shadow.grant_types is None or grant_type in shadow.grant_types:
        return None
    return Signal(client_id, SignalKind.WOULD_REFUSE, now, source, None, None, Refusal.GRANT_TYPE)


def pkce_signal(
    client_id: str, has_challenge: bool, shadow: PolicySettings | None, now: int
) -> Signal | None:
    """A `would_refuse` signal for an authorization request without PKCE, when the report-only
    settings require it."""
    if shadow is None or not shadow.require_pkce or has_challenge:
        return None
    return Signal(
        client_id, SignalKind.WOULD_REFUSE, now, Source.AUTHORIZE, None, None, Refusal.PKCE
    )


# -- delays, counted without keeping every one -----------------------------------------------------


def delay_bucket(seconds: int) -> int:
    """The delay a signal is counted under: exact to the second up to ten minutes (a leeway's
    range, where the report's figures matter), then to 10 s up to an hour, then to the minute,
    so a row's delay histogram stays small whatever the client does."""
    seconds = max(0, seconds)
    if seconds <= 600:
        return seconds
    if seconds <= 3600:
        return seconds - seconds % 10
    return seconds - seconds % 60


def merge_delays(into: dict[int, int], delays: Mapping[int, int]) -> None:
    for delay, count in delays.items():
        into[delay] = into.get(delay, 0) + count


def percentile(delays: Mapping[int, int], q: float) -> int | None:
    """The `q` quantile (0 < q ≤ 1) of counted delays, nearest-rank: the smallest delay with at
    least `q` of the observations at or below it; None without observations."""
    total = sum(delays.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for delay in sorted(delays):
        seen += delays[delay]
        if seen >= rank:
            return delay
    return max(delays)  # pragma: no cover - the loop always reaches the rank


# -- integration health ----------------------------------------------------------------------------


# The `client` of the clients summed together past `--metrics-client-series` (`/metrics`).
OTHER_CLIENTS = "other"

# The refusals that name no grant: a request refused before any grant exists.
GRANTLESS = frozenset({Refusal.GRANT_TYPE, Refusal.PKCE})


@dataclass(slots=True)
class Tally:
    """The signals of one kind (and reason) for one client, summed over a time window."""

    count: int = 0
    last_at: int | None = None
    delays: dict[int, int] = field(default_factory=dict)
    grants: set[str] = field(default_factory=set)
    # Distinct grants counted elsewhere (the store counts them in SQL, `COUNT(DISTINCT)`),
    # besides those named in `grants`.
    grant_count: int = 0

    @property
    def distinct_grants(self) -> int:
        return len(self.grants) + self.grant_count

    def add(
        self, count: int, last_at: int, delays: Mapping[int, int], grants: Iterable[str]
    ) -> None:
        self.count += count
        self.last_at = last_at if self.last_at is None else max(self.last_at, last_at)
        merge_delays(self.delays, delays)
        self.grants.update(grants)

    @property
    def p50(self) -> int | None:
        return percentile(self.delays, 0.5)

    @property
    def p95(self) -> int | None:
        return percentile(self.delays, 0.95)

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "last_seen": self.last_at,
            "p50_delay_seconds": self.p50,
            "p95_delay_seconds": self.p95,
            "grants": self.distinct_grants,
        }


@dataclass(slots=True)
class Health:
    """A client's integration health over a window: each kind's tally, the report-only policy's
    refusals by rule, and the share of its grants those refusals touched."""

    client_id: str
    since: int
    tallies: dict[SignalKind, Tally] = field(default_factory=dict)
    refusals: dict[Refusal, Tally] = field(default_factory=dict)
    active_grants: int = 0  # grants of the client live at the end of the window

    def add(
        self,
        kind: SignalKind,
        reason: Refusal | None,
        count: int,
        last_at: int,
        delays: Mapping[int, int],
        grants: Iterable[str] = (),
    ) -> None:
        grants = tuple(grants)
        self.tallies.setdefault(kind, Tally()).add(count, last_at, delays, grants)
        if reason is not None:
            self.refusals.setdefault(reason, Tally()).add(count, last_at, delays, grants)

    def tally(self, kind: SignalKind) -> Tally:
        return self.tallies.get(kind) or Tally()

    @property
    def grants_breaking(self) -> int:
        return self.tally(SignalKind.WOULD_REFUSE).distinct_grants

    @property
    def breaking_share(self) -> float | None:
        """The share of the client's grants the report-only policy would have broken: those
        with a `would_refuse` signal, over those live (a refresh token still usable) or refused
        in the window. None when it says nothing: no grant at all, or refusals only of rules
        that name no grant (a grant type, PKCE: refused before any grant exists), where a
        share of 0% would read as "breaks nothing"."""
        touched = self.grants_breaking
        if touched == 0 and any(self.refusals.get(reason, Tally()).count for reason in GRANTLESS):
            return None
        total = max(self.active_grants, touched)
        return None if total == 0 else touched / total

    @property
    def affected(self) -> bool:
        """Whether the client did anything the report-only policy would refuse, or uses old
        access tokens after rotation (what a tightening of the leeway would break)."""
        return self.tally(SignalKind.WOULD_REFUSE).count > 0

    def to_json(self) -> dict[str, object]:
        return {
            "client_id": self.client_id,
            "since": self.since,
            **{kind.value: self.tally(kind).to_json() for kind in SignalKind},
            "would_refuse_by_rule": {
                reason.value: tally.to_json() for reason, tally in sorted(self.refusals.items())
            },
            "active_grants": self.active_grants,
            "grants_breaking": self.grants_breaking,
            "breaking_share": self.breaking_share,
        }
