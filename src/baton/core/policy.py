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
class Policy:
    lifetimes: Lifetimes = Lifetimes()
    retry: RetryPolicy = RetryPolicy.REPLAY

    @property
    def leeway(self) -> int:
        """The leeway in force: `strict` treats it as 0 whatever is configured."""
        return 0 if self.retry is RetryPolicy.STRICT else self.lifetimes.leeway

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
