"""What went wrong reaching or opening a database, in one line that names the fix.

`baton` commands open the database named by `--db` (`BATON_DB`); a wrong scheme, a server that
is not running, a database or role that does not exist, or a SQLite file in a missing directory
surfaced as a traceback of the driver's. `database_problem` reads the chain of an exception for
those causes; the console script prints its line instead of the traceback (`baton --debug` keeps
the traceback).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

_CHECK = "check --db (BATON_DB)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, and what caused it: `__cause__`, `__context__`, a DBAPI error's `orig`."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        found = pending.pop(0)
        if id(found) in seen:
            continue
        seen.add(id(found))
        yield found
        for linked in (found.__cause__, found.__context__, getattr(found, "orig", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)


def database_problem(exc: BaseException) -> str | None:
    """One line naming what is wrong with the database and how to fix it, or None when `exc` is
    not about reaching or opening one."""
    from baton.store.engines.sqlite import ForeignKeysBroken
    from baton.store.migrate import DatabaseBusy, UnknownSchema

    # asyncpg's errors, when it is loaded: a command on SQLite never imports it, and none of its
    # errors can exist before it is.
    pg = sys.modules.get("asyncpg.exceptions")
    for found in _chain(exc):
        if isinstance(found, DatabaseBusy | UnknownSchema | ForeignKeysBroken):
            return str(found)
        if isinstance(found, ValueError) and str(found).startswith("unsupported database"):
            return f"{found}; {_CHECK}"
        if isinstance(found, ConnectionRefusedError):
            return (
                f"cannot connect to PostgreSQL: {found.strerror or found}; is the server "
                f"running, and is the host and port right? {_CHECK}"
            )
        if isinstance(found, socket.gaierror):
            return f"cannot find the database host ({found.strerror or found}): {_CHECK}"
        if pg is not None and isinstance(found, pg.InvalidCatalogNameError):
            return (
                f"PostgreSQL says: {found}; create it (createdb NAME), then run "
                f"`baton db upgrade`, or {_CHECK}"
            )
        if pg is not None and isinstance(
            found, pg.InvalidAuthorizationSpecificationError | pg.InvalidPasswordError
        ):
            return f"PostgreSQL refused the sign-in: {found}; {_CHECK}"
        if isinstance(found, TimeoutError):
            return f"the database did not answer in time: is it reachable? {_CHECK}"
        if isinstance(found, FileNotFoundError | PermissionError) and found.filename:
            folder = os.path.dirname(os.path.abspath(str(found.filename)))
            if isinstance(found, FileNotFoundError) and not os.path.isdir(folder):
                return (
                    f"cannot open the SQLite database: the directory {folder} does not exist; "
                    f"create it, or {_CHECK}"
                )
            if isinstance(found, PermissionError):
                return f"cannot open {found.filename}: permission denied; {_CHECK}"
    return None
