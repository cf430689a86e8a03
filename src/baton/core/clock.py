"""Time as an injected dependency.

Every rule in Baton compares integer Unix seconds. The server takes a `Clock`, so tests move time
with `FakeClock.advance` instead of sleeping.
"""

from __future__ import annotations

import math
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """The current time in whole Unix seconds, rounded down: what rules compare against."""
        ...

    def ceiling(self) -> int:
        """The current time rounded up to a whole second.

        Lifetimes start here, so a token issued at 12.9 s with a 2 s lifetime lives until 15,
        never less than its 2 s, and `expires_in` counted from here never overstates the time
        a token has left. With a whole-second clock the two are equal.
        """
        ...


class SystemClock:
    def now(self) -> int:
        return int(time.time())

    def ceiling(self) -> int:
        return math.ceil(time.time())


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def ceiling(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds

    def set(self, instant: int) -> None:
        self._now = instant
