"""Statements of the hot paths, compiled once per dialect and run on the driver's cursor.

A Core statement built, keyed and compiled on every call costs several times what SQLite takes
to run it (profiled: building, cache keys and result processing were 40% of a rotation's time in
the writer thread, the SQL itself under 10%). A `Prepared` statement is still written once, with
SQLAlchemy Core, for every dialect; what it skips is the per-call work: it is compiled on first
use for a dialect, and each call binds plain values by position on the DBAPI cursor of the
connection's current transaction. The types on these paths (integers, text, bytes, booleans)
need no conversion in either driver, which the suite checks on both databases.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable


def _positional(
    order: tuple[str, ...], fixed: dict[str, Any]
) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The function from named values to the positional tuple the driver binds, made once per
    statement and dialect rather than a generator over the names run on every call."""
    if fixed:

        def with_fixed(params: Mapping[str, Any]) -> tuple[Any, ...]:
            values = {**fixed, **params}
            return tuple(values[name] for name in order)

        return with_fixed
    if not order:
        return lambda params: ()
    if len(order) == 1:
        (only,) = order
        return lambda params: (params[only],)
    get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(*order)
    return get


class Prepared:
    """One statement with named `bindparam`s; `run(conn, name=value, ...)` executes it."""

    __slots__ = ("_compiled", "columns", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Result column names, for `one()`; empty for statements that return no rows.
        selected = getattr(statement, "selected_columns", None)
        if selected is None:
            returning = getattr(statement, "_returning", ())
            self.columns = tuple(c.key for c in returning)
        else:
            self.columns = tuple(selected.keys())
        self._compiled: dict[str, tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            order = tuple(compiled.positiontup or ())
            # Values fixed in the statement itself (`literal(...)`): bound on every call.
            fixed = {
                name: bind.value
                for name, bind in compiled.binds.items()
                if not bind.required and bind.callable is None
            }
            found = (compiled.string, _positional(order, fixed))
            self._compiled[dialect.name] = found
        return found

    def run(self, conn: Connection, **params: Any) -> Any:
        """Executes in `conn`'s transaction; returns the DBAPI cursor (rows, rowcount)."""
        sql, positional = self._for(conn.dialect)
        args = positional(params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, args)
        except Exception as exc:
            # What SQLAlchemy does for its own statements: wrap the driver's error in a
            # `DBAPIError`, and invalidate the connection (and the pool's older ones) when it
            # means the database went away, so the next transaction gets a fresh connection and
            # the request a 503 rather than a 500.
            conn._handle_dbapi_exception(exc, sql, args, cursor, None)
        return cursor

    def one(self, conn: Connection, **params: Any) -> dict[str, Any] | None:
        """The first row as a dict of column name to value, or None."""
        row = self.run(conn, **params).fetchone()
        return None if row is None else dict(zip(self.columns, row, strict=True))

    def rowcount(self, conn: Connection, **params: Any) -> int:
        count: int = self.run(conn, **params).rowcount
        return count
