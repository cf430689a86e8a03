"""Time as an injected dependency.

Every rule in Baton compares integer Unix seconds. The server takes a `Clock`, so tests move time
with `FakeClock.advance` instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """The current time in whole Unix seconds."""
        ...


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds

    def set(self, instant: int) -> None:
        self._now = instant
