"""One point query three ways, in-process on an in-memory SQLite: what a call costs each.

    .venv/bin/python bench/prepared_calls.py [--calls 20000]

- `Prepared.run`: the statement compiled once, bound by position on the driver's cursor (the
  fast path of `baton.store.prepared`);
- `Connection.exec_driver_sql`: the same SQL string and tuple through SQLAlchemy's public
  driver-level call, which would replace `Connection._handle_dbapi_exception`;
- `Connection.execute`: the Core statement, as with `Settings.fast_paths` off.

Prints the best of three timings per call, in microseconds. docs/performance.md ("Prepared
statements") has the figures and why the private call is kept.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, create_engine, select

from baton.store.prepared import FAST_PATHS_OPTION, Prepared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    metadata = MetaData()
    things = Table(
        "things", metadata, Column("id", Integer, primary_key=True), Column("name", String)
    )
    query = Prepared(select(things).where(things.c.id == bindparam("id")))
    engine = create_engine("sqlite://")  # one connection per thread: both see the table
    plain_engine = engine.execution_options(**{FAST_PATHS_OPTION: False})
    with engine.connect() as conn, plain_engine.connect() as plain:
        metadata.create_all(conn)
        conn.exec_driver_sql("INSERT INTO things VALUES (1, 'a')")
        sql = str(query.statement.compile(dialect=conn.dialect))  # type: ignore[attr-defined]
        ways: list[tuple[str, Callable[[], object]]] = [
            ("Prepared.run", lambda: query.run(conn, id=1).fetchone()),
            ("Connection.exec_driver_sql", lambda: conn.exec_driver_sql(sql, (1,)).fetchone()),
            ("Connection.execute (fast paths off)", lambda: query.run(plain, id=1).fetchone()),
        ]
        for name, call in ways:
            best = min(timeit.repeat(call, number=args.calls, repeat=3)) / args.calls
            print(f"{name:38} {best * 1e6:6.1f} us a call")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
