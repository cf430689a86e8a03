"""A grant's token family as a timeline: when each pair was born, exchanged and died, and why.

Operators ask "why was this client logged out", "which token was replayed", "when does this
access token really die". The answers are derived here from the stored facts of one grant (its
refresh and access tokens and its security events), with no I/O, so the console's picture and
the terminal's table of `baton demo` tell the same story.

A death is never stored: it is the first instant at which `baton.core.rules` stops honouring a
token. To find it, the rules are asked about the facts *as they stood at* each candidate instant
(a revocation or an exchange that happened later is not yet known then); liveness only ever
goes from live to dead, so the first candidate the rules refuse is the death.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from baton.core import rules
from baton.core.facts import AccessFacts, CompanionFacts, GrantFacts, RefreshFacts
from baton.core.policy import Policy
from baton.core.vocabulary import RevocationCause, SecurityEventKind

# -- the stored facts, as the store hands them over ----------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    id: int
    parent_id: int | None
    generation: int
    issued_at: int
    expires_at: int
    exchanged_at: int | None
    retire_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class AccessRecord:
    generation: int
    refresh_id: int | None  # the companion refresh token; None for client_credentials
    issued_at: int
    expires_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A security event of the grant (`security_events`)."""

    kind: str  # a `SecurityEventKind`, as stored
    generation: int | None
    occurred_at: int
    detail: str | None = None


# -- the picture's parts ------------------------------------------------------------------------


class Kind(StrEnum):
    """What a mark on the timeline stands for."""

    EXCHANGE = "exchange"
    RETRY = "retry in the leeway"
    REUSE = "reuse detected"
    CODE_REUSE = "authorization code replayed"
    REVOKED = "grant revoked"


@dataclass(frozen=True, slots=True)
class Span:
    """A token's life: from `start` (issue) to `end` (death, derived by the rules)."""

    start: int
    end: int
    cause: str  # why it ends at `end`, in words an operator reads

    def live_at(self, instant: int) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True, slots=True)
class Mark:
    kind: Kind
    at: int
    generation: int | None
    note: str


@dataclass(frozen=True, slots=True)
class Bar:
    """One pair of the family: its refresh token's life and its access token's inside it."""

    generation: int
    refresh: Span | None  # None for an access token without a refresh token
    access: Span | None  # None if its access token has been purged
    exchanged_at: int | None
    leeway: Span | None  # from the exchange to the end of the leeway (or an earlier death)
    marks: tuple[Mark, ...]  # the exchange, retries inside the leeway, reuse of this token

    @property
    def start(self) -> int:
        spans = [s for s in (self.refresh, self.access) if s is not None]
        return min(s.start for s in spans)

    @property
    def end(self) -> int:
        spans = [s for s in (self.refresh, self.access) if s is not None]
        return max(s.end for s in spans)


@dataclass(frozen=True, slots=True)
class Timeline:
    grant: GrantFacts
    now: int
    start: int  # the left edge of the picture
    end: int  # the right edge: the last thing worth seeing (a far-off expiry is cut off)
    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]  # family-wide: reuse, code replay, revocation
    omitted: int  # older pairs left out of the picture

    @property
    def status(self) -> str:
        grant = self.grant
        if grant.revoked_at is not None:
            return f"revoked ({grant.revoked_reason or 'unknown reason'})"
        return "active" if grant.live(self.now) else "expired"

    @property
    def all_marks(self) -> tuple[Mark, ...]:
        return tuple(m for bar in self.bars for m in bar.marks) + self.marks


# -- deriving deaths ------------------------------------------------------------------------------


def _known(instant: int | None, at: int) -> int | None:
    """A fact as it stood at `at`: an instant in the future of `at` is not known yet."""
    return instant if instant is not None and instant <= at else None


def _grant_at(grant: GrantFacts, at: int) -> GrantFacts:
    revoked_at = _known(grant.revoked_at, at)
    return replace(
        grant,
        revoked_at=revoked_at,
        revoked_reason=grant.revoked_reason if revoked_at is not None else None,
    )


def _refresh_at(grant: GrantFacts, token: RefreshRecord, at: int) -> RefreshFacts:
    exchanged_at = _known(token.exchanged_at, at)
    return RefreshFacts(
        id=token.id,
        grant=_grant_at(grant, at),
        generation=token.generation,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        exchanged_at=exchanged_at,
        retire_at=token.retire_at if exchanged_at is not None else None,
        revoked_at=_known(token.revoked_at, at),
        sealed_response=None,
    )


def _access_at(
    grant: GrantFacts, token: AccessRecord, companion: RefreshRecord | None, at: int
) -> AccessFacts:
    facts = None
    if companion is not None:
        exchanged = _known(companion.exchanged_at, at) is not None
        facts = CompanionFacts(
            retire_at=companion.retire_at if exchanged else None,
            revoked_at=_known(companion.revoked_at, at),
        )
    return AccessFacts(
        id=0,
        grant=_grant_at(grant, at),
        generation=token.generation,
        scope="",
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        revoked_at=_known(token.revoked_at, at),
        companion=facts,
    )


def _grant_revoked_cause(grant: GrantFacts) -> str:
    if grant.revoked_reason == RevocationCause.REUSE:
        return "grant revoked: reuse detected"
    if grant.revoked_reason == RevocationCause.CODE_REUSE:
        return "grant revoked: authorization code replayed"
    return f"grant revoked ({grant.revoked_reason or 'unknown reason'})"


def refresh_span(grant: GrantFacts, token: RefreshRecord, policy: Policy) -> Span:
    """The refresh token's life, ended by the first instant the rules refuse it."""
    causes: list[tuple[int | None, str]] = [
        (grant.revoked_at, _grant_revoked_cause(grant)),
        (token.revoked_at, "revoked"),
        (token.exchanged_at, "exchanged (no leeway)"),
        (token.retire_at, "leeway ended after the exchange"),
        (grant.expires_at, "grant reached its absolute lifetime"),
        (token.expires_at, "expired (idle lifetime)"),
    ]

    def dead(at: int) -> bool:
        return not rules.refresh_liveness(_refresh_at(grant, token, at), at, policy).active

    return _first_death(token.issued_at, causes, dead, token.expires_at)


def access_span(grant: GrantFacts, token: AccessRecord, companion: RefreshRecord | None) -> Span:
    """The access token's life: its own `exp`, or earlier with its grant or its companion."""
    causes: list[tuple[int | None, str]] = [
        (grant.revoked_at, _grant_revoked_cause(grant)),
        (token.revoked_at, "revoked"),
    ]
    if companion is not None:
        causes += [
            (companion.revoked_at, "its refresh token was revoked"),
            (
                companion.retire_at if companion.exchanged_at is not None else None,
                "its refresh token's leeway ended",
            ),
        ]
    causes += [
        (grant.expires_at, "grant reached its absolute lifetime"),
        (token.expires_at, "expired"),
    ]

    def dead(at: int) -> bool:
        return not rules.access_liveness(_access_at(grant, token, companion, at), at).active

    return _first_death(token.issued_at, causes, dead, token.expires_at)


def _first_death(
    start: int,
    causes: list[tuple[int | None, str]],
    dead: Callable[[int], bool],
    fallback: int,
) -> Span:
    # A cause listed earlier wins a tie: a revocation explains a death better than an expiry
    # that fell on the same second.
    candidates = sorted(
        ((max(at, start), order, why) for order, (at, why) in enumerate(causes) if at is not None),
    )
    for at, _order, why in candidates:
        if dead(at):
            return Span(start, at, why)
    return Span(start, max(fallback, start), "expired")


# -- the timeline ---------------------------------------------------------------------------------


def build(
    grant: GrantFacts,
    refresh: list[RefreshRecord],
    access: list[AccessRecord],
    events: list[EventRecord],
    *,
    now: int,
    policy: Policy,
    omitted: int = 0,
) -> Timeline:
    """The timeline of one grant from its facts, as of `now`."""
    by_id = {token.id: token for token in refresh}
    access_of: dict[int, AccessRecord] = {}
    lone_access: list[AccessRecord] = []
    for minted in access:
        if minted.refresh_id is not None and minted.refresh_id in by_id:
            access_of.setdefault(minted.refresh_id, minted)
        elif minted.refresh_id is None:
            lone_access.append(minted)

    bars: list[Bar] = []
    for token in sorted(refresh, key=lambda t: (t.generation, t.issued_at, t.id)):
        paired = access_of.get(token.id)
        r_span = refresh_span(grant, token, policy)
        a_span = access_span(grant, paired, token) if paired is not None else None
        leeway = None
        marks: list[Mark] = []
        if token.exchanged_at is not None:
            marks.append(Mark(Kind.EXCHANGE, token.exchanged_at, token.generation, "exchanged"))
            # No window under `strict` (retire_at == exchanged_at), nor after an earlier death.
            retire_at = token.retire_at if token.retire_at is not None else token.exchanged_at
            if retire_at > token.exchanged_at and r_span.end > token.exchanged_at:
                leeway = Span(token.exchanged_at, r_span.end, r_span.cause)
        bars.append(Bar(token.generation, r_span, a_span, token.exchanged_at, leeway, tuple(marks)))
    for lone in sorted(lone_access, key=lambda t: (t.generation, t.issued_at)):
        bars.append(Bar(lone.generation, None, access_span(grant, lone, None), None, None, ()))

    family: list[Mark] = []
    for event in sorted(events, key=lambda e: e.occurred_at):
        mark = _event_mark(event)
        if mark is None:
            continue
        owner = _owner(bars, mark)
        if owner is None:
            family.append(mark)
        else:
            bars[owner] = replace(bars[owner], marks=(*bars[owner].marks, mark))
    if grant.revoked_at is not None and not any(m.at == grant.revoked_at for m in family):
        family.append(Mark(Kind.REVOKED, grant.revoked_at, None, _grant_revoked_cause(grant)))

    start = min([grant.created_at, *(bar.start for bar in bars)])
    if omitted and bars:
        start = min(bar.start for bar in bars)
    end = _story_end(grant, bars, family, now, start)
    return Timeline(grant, now, start, end, tuple(bars), tuple(family), omitted)


def _event_mark(event: EventRecord) -> Mark | None:
    note = event.detail or ""
    if event.kind == SecurityEventKind.LEEWAY_RETRY:
        return Mark(Kind.RETRY, event.occurred_at, event.generation, note or "retried")
    if event.kind == SecurityEventKind.REFRESH_TOKEN_REUSE:
        return Mark(Kind.REUSE, event.occurred_at, event.generation, note or "reuse detected")
    if event.kind == SecurityEventKind.CODE_REUSE:
        return Mark(Kind.CODE_REUSE, event.occurred_at, None, note or "code replayed")
    return None


def _owner(bars: list[Bar], mark: Mark) -> int | None:
    """The bar a retry or a reuse belongs to: the exchanged token of that generation."""
    if mark.generation is None:
        return None
    found = None
    for i, bar in enumerate(bars):
        if bar.generation != mark.generation or bar.exchanged_at is None:
            continue
        # Siblings (fork) share a generation: the latest exchange before the mark wins.
        latest = found is None or (bars[found].exchanged_at or 0) <= bar.exchanged_at
        if bar.exchanged_at <= mark.at and latest:
            found = i
    return found


def _story_end(grant: GrantFacts, bars: list[Bar], family: list[Mark], now: int, start: int) -> int:
    """The right edge: everything that has happened, the present while the grant lives, and
    the deaths that are near (leeways, access tokens); a refresh expiry months away is not."""
    instants = [start]
    for bar in bars:
        instants.append(bar.start)
        instants += [m.at for m in bar.marks]
        if bar.access is not None:
            instants.append(bar.access.end)
        if bar.leeway is not None:
            instants.append(bar.leeway.end)
        if bar.refresh is not None and bar.refresh.end <= now:
            instants.append(bar.refresh.end)
    instants += [m.at for m in family]
    if grant.live(now):
        instants.append(now)
    return max(instants)


__all__ = [
    "AccessRecord",
    "Bar",
    "EventRecord",
    "Kind",
    "Mark",
    "RefreshRecord",
    "Span",
    "Timeline",
    "access_span",
    "build",
    "refresh_span",
]
