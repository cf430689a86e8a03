"""The words registered for scopes (`baton scope describe`), which the consent page shows.

A row of `scopes` says what a scope lets a client do, in a person's words ("read your
calendars"); a scope without a row shows its bare name. `ScopeStore` is a mixin of `SQLStore`:
each method is one unit of work through the store's runner.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, delete, insert, select, update

from baton.store.schema import scopes

T = TypeVar("T")


@dataclass(frozen=True)
class ScopeDescription:
    name: str
    description: str
    updated_at: int


def describe(conn: Connection, name: str, description: str, now: int) -> bool:
    """Registers (or rewords) `name`; True when it was new."""
    changed = conn.execute(
        update(scopes).where(scopes.c.name == name).values(description=description, updated_at=now)
    ).rowcount
    if changed:
        return False
    conn.execute(insert(scopes).values(name=name, description=description, updated_at=now))
    return True


def descriptions(conn: Connection, names: Collection[str]) -> dict[str, str]:
    if not names:
        return {}
    rows = conn.execute(
        select(scopes.c.name, scopes.c.description).where(scopes.c.name.in_(sorted(names)))
    )
    return {name: description for name, description in rows}


def every_description(conn: Connection) -> list[ScopeDescription]:
    rows = conn.execute(
        select(scopes.c.name, scopes.c.description, scopes.c.updated_at).order_by(scopes.c.name)
    )
    return [ScopeDescription(name, description, at) for name, description, at in rows]


def forget(conn: Connection, name: str) -> bool:
    return bool(conn.execute(delete(scopes).where(scopes.c.name == name)).rowcount)


class ScopeStore:
    """`SQLStore`'s scope descriptions."""

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Connection], T]) -> T: ...

        async def _read(self, work: Callable[[Connection], T]) -> T: ...

    async def describe_scope(self, name: str, description: str, now: int) -> bool:
        """Registers the words for `name` (replacing earlier ones); True when it was new."""
        return await self._write(lambda conn: describe(conn, name, description, now))

    async def scope_descriptions(self, names: Collection[str]) -> dict[str, str]:
        """name -> description of those of `names` that are registered."""
        return await self._read(lambda conn: descriptions(conn, names))

    async def all_scope_descriptions(self) -> list[ScopeDescription]:
        return await self._read(every_description)

    async def remove_scope(self, name: str) -> bool:
        """Forgets the words for `name`; False when none were registered."""
        return await self._write(lambda conn: forget(conn, name))
