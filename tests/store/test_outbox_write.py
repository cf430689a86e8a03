"""`baton.store.sql.outbox.write`, the wrapper every store write goes through, keeps the error of
a failed transaction: with the database gone, the connection refuses even its `info`, and that
refusal must not replace the error the server answers 503 for (regression: a 500 in CI's
PostgreSQL outage test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from sqlalchemy.exc import OperationalError, PendingRollbackError

from baton.store.sql import outbox


class _Invalidated:
    @property
    def info(self) -> dict[str, Any]:
        raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")


class _Runner:
    async def write(self, work: Callable[[Any], Any]) -> Any:
        return work(_Invalidated())


def test_the_failure_of_the_work_is_what_the_caller_sees() -> None:
    def work(_conn: Any) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionResetError("connection lost"))

    with pytest.raises(OperationalError):
        anyio.run(outbox.write, _Runner(), work)  # type: ignore[arg-type]
