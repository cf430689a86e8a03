"""Baton's own spans (the token exchange, the rules' decision) behind one seam that costs nothing
while tracing is off.

`span(name)` is a context manager whose `set(key, value)` records an attribute. Until
`baton.server.observability.tracing` turns tracing on in this process, it is one shared object
whose methods do nothing: no OpenTelemetry import, no allocation. The store and the endpoints
call it where the work happens; `core/` never does (its rules are pure functions, and the store
records what they decided).

Attribute values are identifiers and outcomes (a grant type, a client id, a grant id, a decision),
never a token, a code, a secret or anything a request carried in its body or headers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

AttributeValue = str | int | bool


class Span(Protocol):
    def set(self, key: str, value: AttributeValue) -> None: ...


class _Off:
    """The span while tracing is off: entered, given attributes and left for nothing."""

    __slots__ = ()

    def __enter__(self) -> _Off:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def set(self, key: str, value: AttributeValue) -> None:
        return None


OFF = _Off()

Starter = Callable[[str], AbstractContextManager[Span]]

_start: Starter | None = None


def span(name: str) -> AbstractContextManager[Span]:
    """A child span of the current one, named `name` (`baton.token.exchange`), or `OFF`."""
    return OFF if _start is None else _start(name)


def switch(start: Starter | None) -> None:
    """Turns this process's spans on (`start` makes each one) or off (None); the tracing module
    calls it, nothing else should."""
    global _start
    _start = start


def enabled() -> bool:
    return _start is not None
