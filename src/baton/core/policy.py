"""Lifetimes and the retry policy: the knobs an operator turns, with their safe defaults."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY = 86_400


class RetryPolicy(StrEnum):
    """What a refresh token presented again inside its leeway gets."""

    REPLAY = "replay"  # the same child pair again, byte for byte (default)
    FORK = "fork"  # a fresh sibling pair each time
    STRICT = "strict"  # no leeway: any second use is reuse


@dataclass(frozen=True, slots=True)
class Lifetimes:
    access_ttl: int = 3600
    refresh_idle_ttl: int = 90 * DAY
    refresh_absolute_ttl: int = 365 * DAY
    leeway: int = 600
    code_ttl: int = 60

    def __post_init__(self) -> None:
        for name in ("access_ttl", "refresh_idle_ttl", "refresh_absolute_ttl", "code_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.leeway < 0:
            raise ValueError("leeway must not be negative")


@dataclass(frozen=True, slots=True)
class Cap:
    """A stretch of time, `[start, end)` (`end` None: still running), during which a client's
    policy gave refresh tokens these lifetimes. A refresh token issued before `start` dies in it
    once its own idle (or its grant's absolute) lifetime under these is over, and stays dead
    whatever policy comes after (`Policy.refresh_deadline`)."""

    start: int
    end: int | None
    refresh_idle_ttl: int
    refresh_absolute_ttl: int


def _capped(deadline: int, born: int, caps: tuple[Cap, ...], idle: bool) -> int:
    for cap in caps:
        if cap.start <= born:
            continue  # issued under it (its lifetimes are the token's own) or after it ended
        lifetime = cap.refresh_idle_ttl if idle else cap.refresh_absolute_ttl
        death = max(cap.start, born + lifetime)
        if cap.end is None or death < cap.end:
            deadline = min(deadline, death)
    return deadline


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy in force for one decision: the server's, or a client's over it
    (`baton.core.client_policy.ClientPolicy.at`).

    `rotate`: whether a refresh issues a new refresh token (always for public clients, RFC 9700
    §4.14.2); without it a confidential client keeps its refresh token and gets a new access
    token. `since`: the instant this policy came into force for its client (None: the server's
    own, in force for as long as the process runs). Lifetimes are promised when a token is
    issued and a leeway when a token is exchanged. `caps`: the client's policies since its
    first change, each with the stretch of time it was in force: one that came into force after
    a refresh token was issued caps that token's idle and absolute lifetimes
    (`refresh_deadline`, `grant_deadline`), never extends them (a token a stricter policy ended
    stays ended when a looser one follows), and never shortens an access token already out or
    a leeway already running (resource servers hold those as promised).
    """

    lifetimes: Lifetimes = Lifetimes()
    retry: RetryPolicy = RetryPolicy.REPLAY
    rotate: bool = True
    since: int | None = None
    caps: tuple[Cap, ...] = ()

    @property
    def leeway(self) -> int:
        """The leeway in force: `strict` treats it as 0 whatever is configured."""
        return 0 if self.retry is RetryPolicy.STRICT else self.lifetimes.leeway

    def refresh_deadline(self, issued_at: int, expires_at: int) -> int:
        """When a refresh token issued at `issued_at` with idle expiry `expires_at` stops being
        honoured under this policy: its own expiry, or sooner when this policy came into force
        after it was issued with a shorter idle lifetime (`caps`)."""
        return _capped(expires_at, issued_at, self._own_caps(), idle=True)

    def grant_deadline(self, created_at: int, expires_at: int) -> int:
        """A grant's absolute expiry under this policy: as promised at its creation, or sooner
        when a policy that came into force after it had a shorter absolute lifetime (`caps`)."""
        return _capped(expires_at, created_at, self._own_caps(), idle=False)

    def _own_caps(self) -> tuple[Cap, ...]:
        """`caps`, or without them, this policy's own from `since` on (a policy built alone)."""
        if self.caps or self.since is None:
            return self.caps
        lifetimes = self.lifetimes
        return (Cap(self.since, None, lifetimes.refresh_idle_ttl, lifetimes.refresh_absolute_ttl),)

    def grant_expiry(self, now: int) -> int:
        return now + self.lifetimes.refresh_absolute_ttl

    def pair_expiries(self, now: int, grant_expires_at: int) -> tuple[int, int]:
        """(access `exp`, refresh `exp`) for a pair issued at `now`.

        The refresh token lives its idle lifetime, capped by the grant's absolute expiry; the
        access token lives its own lifetime, capped by its companion refresh token (rule 2: it
        is never valid past the end of its companion's life).
        """
        refresh_exp = min(now + self.lifetimes.refresh_idle_ttl, grant_expires_at)
        access_exp = min(now + self.lifetimes.access_ttl, refresh_exp)
        return access_exp, refresh_exp

    def access_only_expiry(self, now: int, grant_expires_at: int) -> int:
        return min(now + self.lifetimes.access_ttl, grant_expires_at)
