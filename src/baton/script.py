"""The `baton` console script: `baton.cli`, or one line naming the extra to install.

A base install (`pip install baton-oauth`) is the client SDK and the resource-server middleware;
the commands need the `server` extra. Without it, importing `baton.cli` (or running a command
that imports a server dependency late) raises `ModuleNotFoundError` deep in a traceback: this
entry point turns that into a one-line hint instead. A module that *is* installed and still
fails to import is a real error and keeps its traceback.
"""

from __future__ import annotations

import importlib.util
import sys

from baton import DISTRIBUTION

# The top-level modules the `server` extra installs, by import name (a test holds this to
# pyproject.toml).
SERVER_MODULES = frozenset(
    {
        "alembic",
        "argon2",
        "asyncpg",
        "click",
        "cryptography",
        "httptools",
        "itsdangerous",
        "jinja2",
        "joserfc",
        "markupsafe",
        "prometheus_client",
        "rich",
        "sqlalchemy",
        "starlette",
        "structlog",
        "uvicorn",
        "uvloop",
    }
)


def missing_server_module(exc: ModuleNotFoundError) -> str | None:
    """The server dependency `exc` is about, when it is absent from the environment."""
    top = (exc.name or "").partition(".")[0]
    if top not in SERVER_MODULES:
        return None
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules: absent
        found = False
    return None if found else top


def main() -> None:
    try:
        from baton.cli import main as cli

        cli()
    except ModuleNotFoundError as exc:
        module = missing_server_module(exc)
        if module is None:
            raise
        sys.exit(
            f"baton: the server is not installed ({module} is missing): "
            f"pip install '{DISTRIBUTION}[server]'"
        )
    except Exception as exc:
        sys.exit(one_line(exc))


def one_line(exc: Exception) -> str:
    """What a command that failed prints instead of a traceback (exit status 1): the database
    problem and its fix, when it is one (`baton.store.problems`); else the error, and how to see
    its traceback. With `baton --debug` (or BATON_DEBUG=1) the traceback is raised instead."""
    from baton.cli.common import debugging
    from baton.store.problems import database_problem

    if debugging():
        raise exc
    problem = database_problem(exc)
    if problem is not None:
        return f"error: {problem}"
    return (
        f"error: unexpected {type(exc).__name__}: {exc} "
        "(run `baton --debug ...` for the traceback, and report it)"
    )


if __name__ == "__main__":
    main()
