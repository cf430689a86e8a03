"""`baton user create` and `baton user signout`: the people who sign in at `/authorize`."""

from __future__ import annotations

import sys

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.passwords import hash_password
from baton.store.sql import SQLStore, UserExists


@click.group()
def user() -> None:
    """Users who sign in at the authorization endpoint."""


@user.command("create")
@db_option
@click.option("--username", required=True)
@click.option("--password", help="The password (prefer --password-stdin: argv is visible).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="May sign in to the admin console at /admin.")
@click.option("--json", "as_json", is_flag=True)
def user_create(
    db: str, username: str, password: str | None, password_stdin: bool, admin: bool, as_json: bool
) -> None:
    """Create a user (with --admin, one who may use the admin console)."""
    if (password is None) == (not password_stdin):
        fail("give exactly one of --password and --password-stdin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    assert password is not None
    if not password:
        fail("the password must not be empty")
    hashed = hash_password(password)
    try:
        created = run_with_store(
            db, lambda store: store.create_user(username, hashed, current_time(), admin=admin)
        )
    except UserExists:
        fail(f"user {username!r} already exists")
    payload = {"id": created.id, "username": username, "admin": admin}
    emit(as_json, payload, f"created {'admin ' if admin else ''}user {username}")


@user.command("signout")
@db_option
@click.option("--username", required=True)
@click.option("--json", "as_json", is_flag=True)
def user_signout(db: str, username: str, as_json: bool) -> None:
    """Sign a user out everywhere: every browser session of theirs ends at once (their grants
    stay: revoke those with `baton grants revoke`)."""

    async def work(store: SQLStore) -> int | None:
        found = await store.get_user(username)
        if found is None:
            return None
        return await store.end_user_sessions(found.id, current_time())

    ended = run_with_store(db, work)
    if ended is None:
        fail(f"no user {username!r}")
    payload = {"username": username, "sessions_ended": ended}
    emit(as_json, payload, f"signed {username} out everywhere ({ended} session(s) ended)")
