"""Statements of the hot paths, compiled once per dialect and run on the driver's cursor.

A Core statement built, keyed and compiled on every call costs several times what SQLite takes
to run it (profiled: building, cache keys and result processing took far more of a rotation's
time in the writer than the SQL itself; docs/performance.md, "Prepared statements"). A
`Prepared` statement is still written once, with SQLAlchemy Core, for every dialect; what it
skips is the per-call work: it is compiled on first use for a dialect, and each call binds plain
values by position on the DBAPI cursor of the connection's current transaction. The types on
these paths (integers, text, bytes, booleans) need no conversion in either driver, which the
suite checks on both databases.

The short cut is switchable: a connection whose execution options carry `FAST_PATHS_OPTION`
False (the runners set it from `Settings.fast_paths`) runs the same statement through
SQLAlchemy's ordinary `Connection.execute`, with the same rows and errors.

It leans on SQLAlchemy in three places that are not its documented API for applications:
`SQLCompiler.positiontup` (the order of positional parameters: documented on the compiler, for
dialect authors), `SQLCompiler.binds` with `BindParameter.required`/`value`, and
`Connection._handle_dbapi_exception` (private: how SQLAlchemy wraps a driver's error and
invalidates the pool on a disconnect). `incompatibility()` checks them at import, and the first
compilation of a statement raises `SQLAlchemyChanged` rather than misbehave if they moved;
`tests/store/test_prepared_guard.py` checks that they behave as used.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, column, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import bindparam
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

from baton import spans

# The execution option that turns the short cut off for a connection (or engine) when False.
FAST_PATHS_OPTION = "baton_fast_paths"

# The arguments of `Connection._handle_dbapi_exception`, as `Prepared.run` passes them.
_HANDLER_PARAMETERS = ("e", "statement", "parameters", "cursor", "context")


class SQLAlchemyChanged(RuntimeError):
    """The SQLAlchemy internals prepared statements rely on are not there as they were."""


def incompatibility() -> str | None:
    """What of the SQLAlchemy internals `Prepared` uses is missing or changed, or None."""
    handler = getattr(Connection, "_handle_dbapi_exception", None)
    if handler is None:
        return "Connection._handle_dbapi_exception is gone"
    parameters = tuple(inspect.signature(handler).parameters)[1:]  # after self
    if parameters[: len(_HANDLER_PARAMETERS)] != _HANDLER_PARAMETERS:
        return f"Connection._handle_dbapi_exception takes {parameters}"
    compiled = (
        select(column("a")).where(column("a") == bindparam("x")).compile(dialect=sqlite.dialect())
    )
    if not isinstance(compiled, SQLCompiler):
        return f"a statement compiles to {type(compiled).__name__}, not a SQLCompiler"
    if list(getattr(compiled, "positiontup", None) or ()) != ["x"]:
        return "SQLCompiler.positiontup no longer lists the positional parameters"
    bind = getattr(compiled, "binds", {}).get("x")
    if bind is None or not hasattr(bind, "required") or not hasattr(bind, "callable"):
        return "SQLCompiler.binds no longer maps names to BindParameters"
    return None


_INCOMPATIBLE = incompatibility()


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


def enabled(conn: Connection) -> bool:
    """Whether `conn` runs prepared statements on the driver's cursor (the default) rather than
    through `Connection.execute` (`FAST_PATHS_OPTION` set False on it or its engine)."""
    return bool(conn.get_execution_options().get(FAST_PATHS_OPTION, True))


class Prepared:
    """One statement with named `bindparam`s; `run(conn, name=value, ...)` executes it."""

    __slots__ = ("_compiled", "columns", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Result column names, for `one()`: a SELECT's columns, an INSERT/UPDATE/DELETE's
        # RETURNING columns (none without RETURNING).
        exported = getattr(statement, "exported_columns", None)
        self.columns: tuple[str, ...] = () if exported is None else tuple(exported.keys())
        self._compiled: dict[str, tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            if _INCOMPATIBLE is not None:
                raise SQLAlchemyChanged(
                    f"baton's prepared statements do not work with SQLAlchemy "
                    f"{sqlalchemy.__version__}: {_INCOMPATIBLE}. Run with fast paths off "
                    f"(BATON_FAST_PATHS=0) or install the SQLAlchemy version pyproject.toml names."
                )
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
        """Executes in `conn`'s transaction; returns the DBAPI cursor (or, fast paths off, the
        `CursorResult`): `fetchone()`, `fetchall()`, iteration and `rowcount` alike."""
        if not enabled(conn):
            return conn.execute(self.statement, params)
        sql, positional = self._for(conn.dialect)
        args = positional(params)
        cursor = conn.connection.cursor()
        # Past SQLAlchemy's events, which make the other statements' spans: its own (or nothing,
        # tracing off).
        with spans.statement(sql, conn.dialect.name):
            try:
                cursor.execute(sql, args)
            except Exception as exc:
                # What SQLAlchemy does for its own statements: wrap the driver's error in a
                # `DBAPIError`, and invalidate the connection (and the pool's older ones) when
                # it means the database went away, so the next transaction gets a fresh
                # connection and the request a 503 rather than a 500.
                conn._handle_dbapi_exception(exc, sql, args, cursor, None)
        return cursor

    def one(self, conn: Connection, **params: Any) -> dict[str, Any] | None:
        """The first row as a dict of column name to value, or None."""
        row = self.run(conn, **params).fetchone()
        return None if row is None else dict(zip(self.columns, row, strict=True))

    def rowcount(self, conn: Connection, **params: Any) -> int:
        count: int = self.run(conn, **params).rowcount
        return count
