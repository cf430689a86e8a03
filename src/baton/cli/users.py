"""`baton user create`, `list`, `set`, `show`, `set-password`, `disable`, `enable`, `delete` and
`signout`: the people who sign in at `/authorize`, and the standard claims (OIDC Core §5.1)
Baton holds for them.

A password is checked against the password policy (`baton.core.passwords_policy`) wherever it is
set. The commands have no `Settings` of their own: `--password-min-length` is the server's option
of that name, read from the same `BATON_PASSWORD_MIN_LENGTH` with the same default, so one
variable sets it for the server and the commands alike (a config file is read only by `serve`).
Disabling, enabling, deleting and setting a password are audited, as console actions are, with
the actor `cli:<login name>`.
"""

from __future__ import annotations

import getpass
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from baton.cli.common import click_option, current_time, db_option, emit, fail, run_with_store
from baton.config import BY_NAME
from baton.core.claims import PROFILE_MEMBERS
from baton.core.passwords_policy import password_problem
from baton.core.user_claims import ClaimChanges, ClaimError, Claims, apply, check
from baton.data import common_passwords
from baton.passwords import NO_PASSWORD, hash_password
from baton.store.admin import Actor, UserListing
from baton.store.base import User
from baton.store.sql import SQLStore, UserExists

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def user() -> None:
    """Users who sign in at the authorization endpoint."""


TOMBSTONE_NAME = re.compile(r"deleted-[0-9]+")  # `baton.store.sql.users.tombstone`
min_length_option = click_option(BY_NAME["password_min_length"])


def checked_password(password: str, min_length: int, username: str) -> str:
    """`password` hashed, or fail saying why the policy refuses it."""
    problem = password_problem(password, min_length, common_passwords(), username=username)
    if problem is not None:
        fail(problem)
    return hash_password(password)


def cli_actor() -> Actor:
    """Who acts, as the audit log records a command: `cli:` and the login name."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container's numeric user)
        name = "unknown"
    return Actor(f"cli:{name}"[:200], None, current_time())


@user.command("create")
@db_option
@click.option("--username", required=True)
@click.option("--password", help="The password (prefer --password-stdin: argv is visible).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="May sign in to the admin console at /admin.")
@min_length_option
@click.option("--json", "as_json", is_flag=True)
def user_create(
    db: str,
    username: str,
    password: str | None,
    password_stdin: bool,
    admin: bool,
    password_min_length: int,
    as_json: bool,
) -> None:
    """Create a user (with --admin, one who may use the admin console). The password must meet
    the password policy: --password-min-length characters, and none of the most common ones."""
    if (password is None) == (not password_stdin):
        fail("give exactly one of --password and --password-stdin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    assert password is not None
    if TOMBSTONE_NAME.fullmatch(username):
        fail(f"{username!r} is the kind of name a deleted user's record keeps: choose another")
    hashed = checked_password(password, password_min_length, username)
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
    """Sign a user out everywhere: every browser session of theirs ends at once, with the grants
    they gave without offline_access; their applications are told by back-channel logout."""

    async def work(store: SQLStore) -> int | None:
        found = await store.get_user(username)
        if found is None:
            return None
        return (await store.end_user_op_sessions(found.id, current_time())).sessions

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
        "disabled": found.disabled_at is not None,
        "mfa_enrolled": found.totp_enabled,
        "mfa_required": found.mfa_required,
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
    lines.append(f"disabled:       {'yes' if payload['disabled'] else 'no'}")
    mfa = "enrolled" if payload["mfa_enrolled"] else "none"
    lines.append(f"second factor:  {mfa}{' (required)' if payload['mfa_required'] else ''}")
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


# -- the users' life: list, set-password, disable, enable, delete ---------------------------------


def listing_payload(row: UserListing) -> dict[str, Any]:
    u = row.user
    return {
        "id": u.id,
        "username": u.username,
        "admin": u.is_admin,
        "disabled": u.disabled_at is not None,
        "disabled_at": u.disabled_at,
        "email": u.email,
        "has_password": u.password_hash != NO_PASSWORD,
        "mfa_enrolled": u.totp_enabled,
        "mfa_required": u.mfa_required,
        "created_at": row.created_at,
        "password_changed_at": u.password_changed_at,
        "last_sign_in": row.last_sign_in,
    }


@user.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def user_list(db: str, as_json: bool) -> None:
    """List the users by name: admin, disabled, email, second factor, created, last sign-in
    (deleted users are left out)."""

    async def work(store: SQLStore) -> list[UserListing]:
        admin, batch = store.admin(), 500
        found: list[UserListing] = []
        while True:
            page = await admin.user_listing(offset=len(found), limit=batch)
            found += page
            if len(page) < batch:
                return found

    rows = [listing_payload(r) for r in run_with_store(db, work)]
    lines = [f"{'USER':<24} {'ADMIN':<5} {'STATUS':<8} {'MFA':<8} {'EMAIL':<28} LAST SIGN-IN"]
    for r in rows:
        mfa = "yes" if r["mfa_enrolled"] else ("required" if r["mfa_required"] else "no")
        last = r["last_sign_in"]
        lines.append(
            f"{r['username']:<24} {'yes' if r['admin'] else 'no':<5} "
            f"{'disabled' if r['disabled'] else 'active':<8} {mfa:<8} {r['email'] or '-':<28} "
            f"{last if last is not None else '-'}"
        )
    emit(as_json, {"users": rows}, "\n".join(lines) if rows else "no users")


@user.command("set-password")
@db_option
@click.argument("username")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (else it is asked for twice, not echoed).",
)
@min_length_option
@click.option("--json", "as_json", is_flag=True)
def user_set_password(
    db: str, username: str, password_stdin: bool, password_min_length: int, as_json: bool
) -> None:
    """Give a user a new password (never on the command line: asked for, or read from standard
    input). Their sessions stay: `baton user signout` ends them."""
    if run_with_store(db, lambda store: store.get_user(username)) is None:
        fail(f"no user {username!r}")  # before asking for a password for nobody
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "New password", hide_input=True, confirmation_prompt="Repeat it", err=True
        )
    hashed = checked_password(password, password_min_length, username)
    actor = cli_actor()
    changed = run_with_store(db, lambda store: store.admin().set_password(username, hashed, actor))
    if not changed:
        fail(f"no user {username!r}")
    emit(as_json, {"username": username}, f"set a new password for {username}")


def _ended_text(verb: str, username: str, sessions: int, grants: int) -> str:
    return f"{verb} {username}: {sessions} session(s) ended, {grants} grant(s) revoked"


@user.command("disable")
@db_option
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def user_disable(db: str, username: str, as_json: bool) -> None:
    """Disable a user: they cannot sign in, and every session and grant of theirs ends now
    (resource servers hear of it on the revocation feed, relying parties by back-channel
    logout)."""
    actor = cli_actor()

    async def work(store: SQLStore) -> tuple[User | None, Any]:
        found = await store.get_user(username)
        if found is None:
            return None, None
        return found, await store.admin().disable_user(username, actor)

    found, ended = run_with_store(db, work)
    if found is None:
        fail(f"no user {username!r}")
    if ended is None:
        fail(f"user {username!r} is disabled already")
    payload = {
        "username": username,
        "sessions_ended": ended.sessions,
        "grants_revoked": ended.grants_revoked,
    }
    emit(as_json, payload, _ended_text("disabled", username, ended.sessions, ended.grants_revoked))


@user.command("enable")
@db_option
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def user_enable(db: str, username: str, as_json: bool) -> None:
    """Let a disabled user sign in again (what the disabling ended stays ended)."""
    actor = cli_actor()

    async def work(store: SQLStore) -> tuple[User | None, bool]:
        found = await store.get_user(username)
        if found is None:
            return None, False
        return found, await store.admin().enable_user(username, actor)

    found, enabled = run_with_store(db, work)
    if found is None:
        fail(f"no user {username!r}")
    if not enabled:
        fail(f"user {username!r} is not disabled")
    emit(as_json, {"username": username}, f"enabled {username}")


@user.command("delete")
@db_option
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def user_delete(db: str, username: str, yes: bool, as_json: bool) -> None:
    """Delete a user: everything `disable` ends, then their personal data (claims, password,
    second factor, upstream links, consents, sessions); the name is free for a new user. The
    grants they gave stay as revoked history, under the name `deleted-<id>`."""
    if not yes and not click.confirm(
        f"Delete user {username} and end every session and grant of theirs?", err=True
    ):
        fail("nothing deleted (answer y, or pass --yes)")
    actor = cli_actor()
    ended = run_with_store(db, lambda store: store.admin().delete_user(username, actor))
    if ended is None:
        fail(f"no user {username!r}")
    payload = {
        "username": username,
        "sessions_ended": ended.sessions,
        "grants_revoked": ended.grants_revoked,
    }
    emit(as_json, payload, _ended_text("deleted", username, ended.sessions, ended.grants_revoked))
