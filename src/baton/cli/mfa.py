"""`baton user mfa-require`, `mfa-reset` and `mfa-status`: a user's second factor (TOTP, RFC 6238,
with recovery codes; see `baton.server.endpoints.mfa`).

- `mfa-require USER` makes a second factor mandatory for the user (`--off` lifts it): at their
  next sign-in they enrol if they have none. Enrolment stores the secret sealed under the
  key-encryption key, so without `BATON_KEY_ENCRYPTION_KEY` on the server the user cannot enrol,
  and so cannot sign in: the command says so.
- `mfa-reset USER` forgets the user's secret and recovery codes (a lost phone): they enrol again
  at their next sign-in if one is required of them, else sign in with their password alone.
- `mfa-status USER` prints whether the user is enrolled, whether a second factor is required,
  and how many recovery codes are left.

The commands join the `user` group of `baton.cli.users`; each change is audited.
"""

from __future__ import annotations

from typing import Any

import click

from baton.cli.common import current_time, db_option, emit, fail, kek_option, run_with_store
from baton.core.keys import KeyEncryptionError, key_encryption_key
from baton.store.admin import Actor
from baton.store.base import User
from baton.store.sql import SQLStore

CLI_ACTOR = "cli"  # the audit rows' actor for the commands (who ran them is the shell's to say)


def _payload(found: User, codes_left: int) -> dict[str, Any]:
    return {
        "username": found.username,
        "enrolled": found.totp_enabled,
        "required": found.mfa_required,
        "admin": found.is_admin,
        "recovery_codes_left": codes_left,
    }


def _text(payload: dict[str, Any]) -> str:
    required = "yes" if payload["required"] else "no"
    if payload["admin"] and not payload["required"]:
        required += " (yes where the server runs with --mfa-for-admins: an administrator)"
    return "\n".join(
        [
            f"username:            {payload['username']}",
            f"enrolled (TOTP):     {'yes' if payload['enrolled'] else 'no'}",
            f"required:            {required}",
            f"recovery codes left: {payload['recovery_codes_left']}",
        ]
    )


def _kek_problem(secret: str | None) -> str | None:
    """Why the server could not seal a TOTP secret with this key-encryption key, or None."""
    if not secret:
        return "BATON_KEY_ENCRYPTION_KEY is not set"
    try:
        key_encryption_key(secret)
    except KeyEncryptionError as exc:
        return str(exc)
    return None


@click.command("mfa-require")
@db_option
@kek_option
@click.argument("username")
@click.option("--off", is_flag=True, help="No longer require a second factor of the user.")
@click.option("--json", "as_json", is_flag=True)
def mfa_require(
    db: str, key_encryption_key: str | None, username: str, off: bool, as_json: bool
) -> None:
    """Require a second factor (TOTP) of a user: they enrol at their next sign-in. Enrolment
    needs the server's key-encryption key (BATON_KEY_ENCRYPTION_KEY)."""
    actor = Actor(CLI_ACTOR, None, current_time())

    async def work(store: SQLStore) -> tuple[User, int] | None:
        found = await store.set_mfa_required(username, not off, actor)
        if found is None:
            return None
        state = await store.mfa_state(found.id)
        return found, state.recovery_codes_left if state else 0

    done = run_with_store(db, work)
    if done is None:
        fail(f"no user {username!r}")
    payload = _payload(*done)
    problem = None if off or done[0].totp_enabled else _kek_problem(key_encryption_key)
    if problem is not None:
        payload["warning"] = (
            f"{problem}: {username} cannot enrol, and so cannot sign in, until the server has "
            "a key-encryption key (it seals the TOTP secret)"
        )
        click.echo(f"warning: {payload['warning']}", err=True)
    text = f"{'no longer requiring' if off else 'requiring'} a second factor of {username}"
    emit(as_json, payload, text)


@click.command("mfa-reset")
@db_option
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def mfa_reset(db: str, username: str, as_json: bool) -> None:
    """Forget a user's TOTP secret and recovery codes (e.g. a lost phone): they enrol again at
    their next sign-in if a second factor is required of them."""
    actor = Actor(CLI_ACTOR, None, current_time())
    found = run_with_store(db, lambda store: store.reset_mfa(username, actor))
    if found is None:
        fail(f"no user {username!r}")
    payload = _payload(found, 0)
    then = "enrols again at the next sign-in" if found.mfa_required else "signs in with a password"
    emit(as_json, payload, f"reset the second factor of {username}: {then}")


@click.command("mfa-status")
@db_option
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def mfa_status(db: str, username: str, as_json: bool) -> None:
    """Print whether a user has a second factor, whether one is required of them, and how many
    recovery codes they have left (never the secret or the codes)."""

    async def work(store: SQLStore) -> tuple[User, int] | None:
        found = await store.get_user(username)
        if found is None:
            return None
        state = await store.mfa_state(found.id)
        return found, state.recovery_codes_left if state else 0

    done = run_with_store(db, work)
    if done is None:
        fail(f"no user {username!r}")
    payload = _payload(*done)
    emit(as_json, payload, _text(payload))


# `baton user mfa-require|mfa-reset|mfa-status` (added to the `user` group by `baton.cli`).
COMMANDS = (mfa_require, mfa_reset, mfa_status)
