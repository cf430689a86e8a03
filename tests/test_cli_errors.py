"""A command that cannot reach or open its database says so in one line that names the fix, with
exit status 1 and no traceback; `baton --debug` (or BATON_DEBUG=1) shows the traceback (issue 27).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from baton.store.problems import database_problem
from tests.cli_processes import BatonProcesses

Baton = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def baton() -> Iterator[Baton]:
    """`baton(*args, **env)`: the command line `baton ARGS` as a process of its own (exit status,
    stderr), forked from one that imported the CLI once (tests/cli_processes.py), with the
    environment less its BATON_ variables, plus `env`."""
    with BatonProcesses() as processes:
        yield processes.run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_each_database_mistake_is_one_line_with_its_fix(baton: Baton, tmp_path: Path) -> None:
    refused = f"postgresql://postgres@127.0.0.1:{free_port()}/baton"
    missing = f"sqlite:///{tmp_path}/no/such/dir/baton.db"
    cases = {
        "mysql://db.example/baton": "unsupported database 'mysql'",
        refused: "cannot connect to PostgreSQL",
        missing: f"the directory {tmp_path}/no/such/dir does not exist",
    }
    for url, says in cases.items():
        for command in (("serve", "--port", "0"), ("db", "upgrade"), ("client", "list")):
            line = one_line(baton(*command, "--db", url))
            assert says in line and "--db (BATON_DB)" in line, (command, line)


def test_debug_shows_the_traceback(baton: Baton) -> None:
    for result in (
        baton("--debug", "db", "upgrade", "--db", "mysql://db.example/baton"),
        baton("db", "upgrade", "--db", "mysql://db.example/baton", BATON_DEBUG="1"),
    ):
        assert result.returncode == 1 and "Traceback" in result.stderr


def _wrapped(orig: BaseException) -> DBAPIError:
    """An error as SQLAlchemy raises it over asyncpg: the driver's inside a DBAPI error."""
    try:
        raise DBAPIError("connect", {}, orig) from orig
    except DBAPIError as exc:
        return exc


def test_postgresql_answers_are_named() -> None:
    catalog = asyncpg.InvalidCatalogNameError('database "nosuch" does not exist')
    said = database_problem(_wrapped(catalog))
    assert said is not None and 'database "nosuch" does not exist' in said and "createdb" in said
    role = asyncpg.InvalidAuthorizationSpecificationError('role "nobody" does not exist')
    said = database_problem(_wrapped(role))
    assert said is not None and "refused the sign-in" in said
    assert database_problem(_wrapped(socket.gaierror(-2, "Name or service not known")))
    assert database_problem(_wrapped(TimeoutError()))


@pytest.mark.parametrize(
    "error", [RuntimeError("no"), ValueError("other"), FileNotFoundError(2, "gone", __file__)]
)
def test_other_errors_are_not_taken_for_database_problems(error: Exception) -> None:
    assert database_problem(error) is None


def test_serve_with_the_wrong_key_encryption_key_is_one_line(baton: Baton, tmp_path: Path) -> None:
    """Signing keys sealed under one key-encryption key, a start with another: one line before
    any worker starts (it was a traceback in each worker's start-up, and a process that did not
    exit)."""
    db = f"sqlite:///{tmp_path}/baton.db"
    assert baton("db", "upgrade", "--db", db).returncode == 0
    sealed_with = {"BATON_KEY_ENCRYPTION_KEY": "a" * 40}
    rotated = baton("keys", "rotate", "--db", db, **sealed_with)
    assert rotated.returncode == 0, rotated.stderr
    line = one_line(
        baton(
            "serve",
            "--db",
            db,
            "--port",
            str(free_port()),
            "--access-token-format",
            "jwt",
            BATON_KEY_ENCRYPTION_KEY="b" * 40,
        )
    )
    assert "cannot be opened: wrong key-encryption key" in line
    assert "BATON_KEY_ENCRYPTION_KEY" in line
