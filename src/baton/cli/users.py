"""`baton user create`, `set`, `show` and `signout`: the people who sign in at `/authorize`, and
the standard claims (OIDC Core §5.1) Baton holds for them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.core.claims import PROFILE_MEMBERS
from baton.core.user_claims import ClaimChanges, ClaimError, Claims, apply, check
from baton.passwords import hash_password
from baton.store.base import User
from baton.store.sql import SQLStore, UserExists

F = TypeVar("F", bound=Callable[..., Any])


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


def claim_options(command: F) -> F:
    """`--email` and one option per profile member (`--name`, `--given-name`, ...): each sets
    the claim, and "" clears it."""
    for member in reversed(PROFILE_MEMBERS):
        flag = "--" + member.replace("_", "-")
        command = click.option(flag, member, help=f'The `{member}` claim ("" clears it).')(command)
    command = click.option(
        "--email-verified/--no-email-verified",
        default=None,
        help="Whether the email address was verified (a new address is unverified unless "
        "this says it is).",
    )(command)
    return click.option("--email", help='The `email` claim ("" clears it).')(command)


def user_payload(found: User) -> dict[str, Any]:
    return {
        "id": found.id,
        "username": found.username,
        "admin": found.is_admin,
        "email": found.email,
        "email_verified": found.email_verified,
        "profile": {k: found.profile[k] for k in PROFILE_MEMBERS if k in found.profile},
        "updated_at": found.updated_at,
    }


def user_text(payload: dict[str, Any]) -> str:
    lines = [
        f"username:       {payload['username']}",
        f"admin:          {'yes' if payload['admin'] else 'no'}",
        f"email:          {payload['email'] or '-'}",
        f"email_verified: {'yes' if payload['email_verified'] else 'no'}",
    ]
    lines += [f"{k + ':':<15} {v}" for k, v in payload["profile"].items()]
    updated = payload["updated_at"]
    lines.append(f"updated_at:     {updated if updated is not None else '-'}")
    return "\n".join(lines)


@user.command("set")
@db_option
@click.argument("username")
@claim_options
@click.option("--json", "as_json", is_flag=True)
def user_set(
    db: str,
    username: str,
    email: str | None,
    email_verified: bool | None,
    as_json: bool,
    **profile: str | None,
) -> None:
    """Set or clear a user's email and profile claims (what `openid email profile` releases);
    prints the user as they now are."""
    values = {"email": email, **profile}
    given = {name: value for name, value in values.items() if value is not None}
    if not given and email_verified is None:
        fail("nothing to set: give --email, --email-verified or a profile option (see --help)")
    try:
        changes = check(ClaimChanges(given, email_verified))
    except ClaimError as exc:
        fail(str(exc))

    async def work(store: SQLStore) -> User:
        found = await store.get_user(username)
        if found is None:
            fail(f"no user {username!r}")
        after = apply(Claims(found.email, found.email_verified, found.profile), changes)
        if changes.email_verified and not after.email:
            fail("--email-verified needs an email address: give --email too")
        written = await store.set_user_claims(username, changes, current_time())
        if written is None:
            fail(f"no user {username!r}")
        return written[1]

    updated = run_with_store(db, work)
    payload = user_payload(updated)
    emit(as_json, payload, user_text(payload))


@user.command("show")
@db_option
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def user_show(db: str, username: str, as_json: bool) -> None:
    """Print a user and the claims Baton holds for them (never the password)."""
    found = run_with_store(db, lambda store: store.get_user(username))
    if found is None:
        fail(f"no user {username!r}")
    payload = user_payload(found)
    emit(as_json, payload, user_text(payload))
