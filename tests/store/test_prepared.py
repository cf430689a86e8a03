"""`Prepared` statements: the same results as Core, and the same errors."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, literal, select
from sqlalchemy.exc import IntegrityError

from baton.store.engines import SQLiteRunner, normalize_url
from baton.store.prepared import Prepared

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
)
ADD = Prepared(insert(things).values(name=bindparam("name")).returning(things.c.id))
FIND = Prepared(
    select(things.c.id, things.c.name, literal("fixed").label("tag")).where(
        things.c.name == bindparam("name")
    )
)


def test_rows_fixed_values_and_driver_errors_as_sqlalchemy_errors(tmp_path: Path) -> None:
    async def run() -> tuple[int, dict[str, object] | None, dict[str, object] | None]:
        runner = SQLiteRunner(normalize_url(str(tmp_path / "p.db")))
        try:
            await runner.write(lambda conn: metadata.create_all(conn))
            new_id = await runner.write(lambda conn: ADD.run(conn, name="a").fetchone()[0])
            found = await runner.read(lambda conn: FIND.one(conn, name="a"))
            missing = await runner.read(lambda conn: FIND.one(conn, name="b"))
            # A unique violation surfaces as SQLAlchemy's IntegrityError, as with Core.
            with pytest.raises(IntegrityError):
                await runner.write(lambda conn: ADD.run(conn, name="a"))
            return new_id, found, missing
        finally:
            await runner.close()

    new_id, found, missing = anyio.run(run)
    assert found == {"id": new_id, "name": "a", "tag": "fixed"}
    assert missing is None
