"""The SQLAlchemy internals `baton.store.prepared` leans on are there and behave as it uses them.

When one of these fails after an upgrade of SQLAlchemy, the prepared statements would bind
values in the wrong order, lose a fixed value, or turn a lost database into a 500: pin
SQLAlchemy back (pyproject.toml), or adapt `baton.store.prepared` and these tests together.
Until then the server runs with `BATON_FAST_PATHS=0`, which takes SQLAlchemy's public path.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    Table,
    and_,
    bindparam,
    column,
    create_engine,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from baton.store import prepared
from baton.store.prepared import Prepared, SQLAlchemyChanged, incompatibility

VERSION = f"SQLAlchemy {sqlalchemy.__version__}"

# `y` twice, and a value fixed in the statement itself.
STATEMENT: Select[Any, str] = select(column("a"), literal("k").label("t")).where(
    and_(
        column("b") == bindparam("y"), column("a") == bindparam("x"), column("c") == bindparam("y")
    )
)


def test_the_import_time_check_finds_nothing_changed() -> None:
    assert incompatibility() is None, f"{VERSION}: {incompatibility()}"


@pytest.mark.parametrize(
    ("dialect", "order"),
    [
        # qmark: one name per placeholder, in the order of the SQL text
        (sqlite.dialect(), ["param_1", "y", "x", "y"]),
        # numeric_dollar: one name per $n, a repeated parameter reusing its number
        (postgresql.asyncpg.dialect(), ["param_1", "y", "x"]),  # type: ignore[no-untyped-call]
    ],
)
def test_positiontup_orders_the_parameters_as_the_sql_binds_them(
    dialect: sqlalchemy.Dialect, order: list[str]
) -> None:
    compiled = STATEMENT.compile(dialect=dialect)
    assert list(getattr(compiled, "positiontup", None) or ()) == order, (
        f"{VERSION}: SQLCompiler.positiontup changed"
    )


def test_binds_tell_fixed_values_from_required_ones() -> None:
    compiled = STATEMENT.compile(dialect=sqlite.dialect())
    binds = getattr(compiled, "binds", None)
    assert binds is not None, f"{VERSION}: SQLCompiler.binds is gone"
    assert (binds["param_1"].required, binds["param_1"].callable, binds["param_1"].value) == (
        False,
        None,
        "k",
    ), f"{VERSION}: a literal's BindParameter changed"
    assert binds["x"].required and binds["y"].required, f"{VERSION}: a bindparam is not required"


def test_a_prepared_statement_binds_by_position_with_the_fixed_value() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE r (a INTEGER, b INTEGER, c INTEGER)")
        conn.exec_driver_sql("INSERT INTO r VALUES (1, 2, 2), (3, 2, 5)")
        query = Prepared(STATEMENT.select_from(sqlalchemy.table("r")))
        assert query.columns == ("a", "t")
        assert query.one(conn, x=1, y=2) == {"a": 1, "t": "k"}, f"{VERSION}: bound out of order"
        assert query.one(conn, x=3, y=2) is None
    engine.dispose()


def test_handle_dbapi_exception_wraps_and_invalidates_as_sqlalchemy_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metadata = MetaData()
    things = Table("things", metadata, Column("id", Integer, primary_key=True))
    add = Prepared(insert(things).values(id=bindparam("id")))
    missing = Prepared(select(literal(1)).select_from(sqlalchemy.table("missing")))
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        metadata.create_all(conn)
        add.run(conn, id=1)
        with pytest.raises(IntegrityError) as unique:  # wrapped, the connection kept
            add.run(conn, id=1)
        assert isinstance(unique.value.orig, sqlite3.IntegrityError), VERSION
        assert not unique.value.connection_invalidated and not conn.invalidated, VERSION
        # An error the dialect takes for a lost database (here, as if "no such table" were one):
        # the error says the connection was invalidated, and it is.
        monkeypatch.setattr(
            engine.dialect, "is_disconnect", lambda e, *_: "no such table" in str(e)
        )
        with pytest.raises(DBAPIError) as gone:
            missing.run(conn)
        assert gone.value.connection_invalidated, f"{VERSION}: no invalidation on a disconnect"
        assert conn.invalidated, f"{VERSION}: the connection was not invalidated"
    engine.dispose()


def test_a_changed_sqlalchemy_stops_the_first_compilation_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Connection, "_handle_dbapi_exception")
    found = incompatibility()
    assert found is not None and "_handle_dbapi_exception" in found
    monkeypatch.setattr(prepared, "_INCOMPATIBLE", found)
    engine = create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(SQLAlchemyChanged, match="BATON_FAST_PATHS=0"):
        Prepared(select(literal(1))).run(conn)
    # Off, the public path still runs.
    with engine.connect() as conn:
        off = conn.execution_options(**{prepared.FAST_PATHS_OPTION: False})
        assert Prepared(select(literal(1).label("one"))).one(off) == {"one": 1}
    engine.dispose()
