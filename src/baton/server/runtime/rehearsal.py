"""A clock that runs ahead of the system's, for rehearsing a scheduled policy change.

`--clock-offset-file PATH`: the server's clock is the system clock plus the whole seconds written
in PATH (read again whenever the file changes, looked at no more than every 50 ms). A staging
server rehearses the instant a scheduled change takes effect without waiting for it, and the
end-to-end rollout test (tests/e2e/test_policy_rollout.py) moves several real processes through
days in seconds. Never on a production server: whoever can write the file moves its time.
"""

from __future__ import annotations

import math
import os
import time

from baton.logs import get_logger

log = get_logger("baton.clock")

_LOOK_EVERY = 0.05


class OffsetFileClock:
    def __init__(self, path: str) -> None:
        self._path = path
        self._offset = 0
        self._mtime: int | None = None
        self._looked = 0.0
        self._read()

    def _read(self) -> None:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            self._offset, self._mtime = 0, None
            return
        if stat.st_mtime_ns == self._mtime:
            return
        try:
            with open(self._path, encoding="utf-8") as file:
                text = file.read().strip()
            offset = int(text or "0")
        except (OSError, ValueError) as exc:
            log.warning(
                "clock offset file %s unreadable (%s): keeping %d s", self._path, exc, self._offset
            )
            return
        if offset < self._offset:
            log.warning(
                "clock offset %d s is behind %d s: time does not run backwards",
                offset,
                self._offset,
            )
            return
        self._offset, self._mtime = offset, stat.st_mtime_ns

    def time(self) -> float:
        """The shifted time in Unix seconds, as `time.time()` gives the system's (for a
        `baton.resource.Verifier` or a `baton.client.Refresher` rehearsing beside the server)."""
        return self._time()

    def _time(self) -> float:
        wall = time.time()
        if wall - self._looked >= _LOOK_EVERY:
            self._looked = wall
            self._read()
        return wall + self._offset

    def now(self) -> int:
        return int(self._time())

    def ceiling(self) -> int:
        return math.ceil(self._time())
