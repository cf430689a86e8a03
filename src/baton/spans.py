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
StatementStarter = Callable[[str, str], AbstractContextManager[object]]

_start: Starter | None = None
_statement: StatementStarter | None = None


def span(name: str) -> AbstractContextManager[Span]:
    """A child span of the current one, named `name` (`baton.token.exchange`), or `OFF`."""
    return OFF if _start is None else _start(name)


def statement(text: str, system: str) -> AbstractContextManager[object]:
    """The client span of a SQL statement run on the driver's cursor (`baton.store.prepared`),
    past SQLAlchemy's events that make the other statements' spans: its text (placeholders,
    never values) and database system (`sqlite`, `postgresql`); or `OFF`."""
    return OFF if _statement is None else _statement(text, system)


def switch(start: Starter | None, statement: StatementStarter | None = None) -> None:
    """Turns this process's spans on (`start` makes each one, `statement` each SQL statement's)
    or off (None); the tracing module calls it, nothing else should."""
    global _start, _statement
    _start, _statement = start, statement


def enabled() -> bool:
    return _start is not None
