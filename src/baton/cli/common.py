"""What the commands share: the click option of a declared option (`baton.config`), `--db`,
the key-encryption key, failing in one line (exit status 1), running work against a migrated
store, and printing text or one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import anyio
import click

from baton.config import BY_NAME, OPTIONS, Option
from baton.core.keys import KeyEncryptionError, key_encryption_key
from baton.store.migrate import PENDING
from baton.store.sql import SQLStore

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def click_option(option: Option) -> Callable[[F], F]:
    """The click option of a declared option: its flag, variable, type, bounds and default,
    with the variable and the default shown in `--help`."""
    shown: str | bool = option.default_text.replace("`", "") or True
    if isinstance(shown, str) and shown.startswith("none (") and shown.endswith(")"):
        shown = f"none; {shown[6:-1]}"  # click puts the text in parentheses itself
    if option.kind is bool:
        decls = [f"{option.flag}/--no-{option.flag[2:]}"]
        kind: Any = bool
    else:
        decls = [option.flag]
        if option.choices:
            kind = click.Choice(option.choices)
        elif option.is_path:
            kind = click.Path(dir_okay=False)
        elif option.kind is int:
            bounded = option.minimum is not None or option.maximum is not None
            kind = click.IntRange(min=option.minimum, max=option.maximum) if bounded else int
        elif option.kind is float:
            kind = click.FloatRange(min=option.minimum) if option.minimum is not None else float
        else:
            kind = str
    default = option.default
    if option.kind is tuple:
        default = ",".join(default)
    decorator: Callable[[F], F] = click.option(
        *decls,
        option.name,
        envvar=option.env,
        show_envvar=True,
        default=default,
        show_default=shown,
        type=kind,
        help=option.help,
    )
    return decorator


def serve_options(command: F) -> F:
    """Every option of `baton serve` but the secrets that never go on argv."""
    for option in reversed(OPTIONS):
        if not option.env_only:
            command = click_option(option)(command)
    return command


db_option = click_option(BY_NAME["db"])


def debugging() -> bool:
    """`baton --debug` (or BATON_DEBUG=1): a failing command shows its traceback, not one line."""
    return os.environ.get("BATON_DEBUG", "") not in ("", "0")


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def schema_refusal(problem: str, shown_db: str) -> str:
    """The one line a command or `baton serve` stops with on a database whose schema is not
    this release's: migrations pending, or the unknown revision and what is wrong with it."""
    if problem == PENDING:
        return f"the database is not migrated: run `baton db upgrade --db {shown_db}` first"
    return problem


def run_with_store(db: str, work: Callable[[SQLStore], Awaitable[T]]) -> T:
    """`work` run against the store at `db`, refused unless its schema is migrated."""
    store = SQLStore.open(db)

    async def main() -> T:
        try:
            if (problem := await store.schema_problem()) is not None:
                fail(schema_refusal(problem, db))
            return await work(store)
        finally:
            await store.close()

    return anyio.run(main)


kek_option = click_option(BY_NAME["key_encryption_key"])


def check_kek(secret: str | None) -> bytes:
    """The key-encryption key that seals the signing keys, or fail saying how to make one."""
    if not secret:
        fail(
            "JWT access tokens need a key-encryption key: set BATON_KEY_ENCRYPTION_KEY to 32 "
            "or more random characters, e.g. `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    try:
        return key_encryption_key(secret)
    except KeyEncryptionError as exc:
        fail(str(exc))


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    """The result: one JSON object with `--json`, else the text."""
    click.echo(json.dumps(payload) if as_json else text)


def current_time() -> int:
    """The time now, in the seconds the store keeps."""
    from baton.core.clock import SystemClock

    return SystemClock().now()
