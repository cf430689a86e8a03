"""`baton client policy` and `baton client contact`: a client's own policy over the server's
defaults, changes to it scheduled for an instant (issue 28), and whom such a change is told to.

- `policy show CLIENT_ID`: the settings the client sets in force now (every knob it leaves unset
  is the server's, from `baton serve`'s options), since when, and its scheduled change.
- `policy set CLIENT_ID --leeway 60 --retry strict --effective-at +7d --report-only`: a change,
  over the settings in force now (the knobs not given keep their value; `default` gives a knob
  back to the server), from `--effective-at` (ISO 8601 UTC, Unix seconds, or `+7d`, `+2h` from
  now; absent: at once). With `--report-only` the change is evaluated beside the policy in force
  and what it would refuse is counted, refusing nothing, until it takes effect (or for good,
  without `--effective-at`). It replaces any change pending. The server's own policy is read
  from `baton serve`'s variables (`BATON_ACCESS_TTL`...) or `--server-access-ttl`...: a client's
  access-token lifetime above the server's is refused (`PolicySettings.check_against`).
- `policy cancel CLIENT_ID`: the pending change will not happen.
- `contact CLIENT_ID --email ... --notify-url ...`: the integrator's e-mail addresses, and the
  https URL a signed notice of each scheduled or cancelled change is POSTed to.

The knob options are generated from `PolicySettings`' fields, so a knob added there is an option
here. Each write is the admin API's own store call (audited as `cli:<login name>`, with a
notice to the client's `notify_url`); a running server sees it at the client's next request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import click

from baton.cli.common import db_option, emit, fail, run_with_store
from baton.cli.report import server_policy, server_policy_options
from baton.cli.users import cli_actor
from baton.core.client_policy import DURATIONS, ClientPolicy, PolicyError, PolicySettings
from baton.core.policy import Policy, RetryPolicy
from baton.core.registration import GRANT_TYPES
from baton.store.admin import (
    ContactError,
    iso,
    parse_duration,
    parse_instant,
    policy_view,
    settings_words,
)
from baton.store.base import Client
from baton.store.sql import SQLStore
from baton.store.sql.client_admin import Stale
from baton.store.sql.tombstones import is_deleted

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT = "default"  # a knob's value that gives it back to the server's default
# The prefix of the server's own policy options here (`--server-access-ttl`...): `--access-ttl`
# is the client's knob.
SERVER = "server"

# What each knob of `PolicySettings` sets, for its option's help (a knob without one fails
# tests/test_cli_policy.py).
KNOB_HELP = {
    "access_ttl": "Access-token lifetime (seconds, or 15m, 1h).",
    "refresh_idle_ttl": "How long a refresh token lives unused (90d, 12h...).",
    "refresh_absolute_ttl": "How long a grant lives, refreshed or not (365d...).",
    "leeway": "How long an exchanged pair stays usable for a retry (seconds, or 1m).",
    "retry": "What a retry inside the leeway gets: "
    + ", ".join(p.value for p in RetryPolicy)
    + ".",
    "rotate": "yes/no: whether refresh tokens rotate (no: confidential clients only).",
    "grant_types": "Comma-separated grant types it may use: " + ", ".join(GRANT_TYPES) + ".",
    "require_pkce": "yes/no: whether its authorization requests need PKCE.",
}


def knob_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def knob_options(command: F) -> F:
    """One option per knob of `PolicySettings`: a value, or `default`."""
    for knob in reversed(fields(PolicySettings)):
        command = click.option(
            knob_flag(knob.name),
            knob.name,
            default=None,
            metavar="VALUE|default",
            help=KNOB_HELP[knob.name],
        )(command)
    return command


def _yes_no(flag: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    fail(f"{flag} takes yes or no (or default), not {raw!r}")


def knob_value(name: str, raw: str) -> Any:
    """The value of knob `name` from its option (None: `default`); fail saying why not."""
    flag = knob_flag(name)
    if raw.strip().lower() == DEFAULT:
        return None
    if name in DURATIONS:
        try:
            return parse_duration(raw)
        except ValueError as exc:
            fail(f"{flag}: {exc}")
    if name == "retry":
        try:
            return RetryPolicy(raw.strip().lower())
        except ValueError:
            fail(f"{flag} must be one of {', '.join(p.value for p in RetryPolicy)} (or default)")
    if name == "grant_types":
        chosen = tuple(dict.fromkeys(g.strip() for g in raw.split(",") if g.strip()))
        if not chosen:
            fail(f"{flag} needs at least one grant type (or default)")
        return chosen
    return _yes_no(flag, raw)


def changed_settings(base: PolicySettings, given: dict[str, str | None]) -> PolicySettings:
    """`base` with each knob given set (or unset, `default`); fail on a value that cannot be."""
    values = {f.name: getattr(base, f.name) for f in fields(PolicySettings)}
    for name, raw in given.items():
        if raw is not None:
            values[name] = knob_value(name, raw)
    try:
        return PolicySettings(**values)
    except PolicyError as exc:
        fail(str(exc))


def policy_text(view: dict[str, Any]) -> str:
    """`policy show`'s text: the settings in force, the scheduled change, the contact."""
    in_force = view["in_force"]
    now_words = settings_words(PolicySettings.from_json(in_force["settings"], lenient=True))
    if in_force["since"] is not None:
        now_words += f" (since {iso(in_force['since'])})"
    scheduled = view["scheduled"]
    if scheduled is None:
        pending = "none"
    else:
        pending = settings_words(PolicySettings.from_json(scheduled["settings"], lenient=True))
        if scheduled["effective_at"] is None:
            pending += ", report-only with no date"
        else:
            pending += f" from {iso(scheduled['effective_at'])}"
            if scheduled["report_only"]:
                pending += ", report-only until then"
    lines = [
        ("client_id", view["client_id"]),
        ("in force", now_words + " (unset knobs: the server's options)"),
        ("scheduled", pending),
        ("contacts", " ".join(view["contacts"]) or "-"),
        ("notify_url", view["notify_url"] or "-"),
    ]
    return "\n".join(f"{name + ':':<12} {value}" for name, value in lines)


async def _live(store: SQLStore, client_id: str) -> Client:
    found = await store.get_client(client_id)
    if found is None:
        fail(f"no client {client_id!r}")
    if is_deleted(found):
        fail(f"client {client_id!r} was deleted: its id never authenticates again")
    return found


@click.group("policy")
def policy() -> None:
    """A client's own policy over the server's, and changes to it scheduled for an instant."""


@policy.command("show")
@db_option
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def policy_show(db: str, client_id: str, as_json: bool) -> None:
    """Print the client's settings in force, its scheduled change and its contact."""
    now = cli_actor().now

    async def work(store: SQLStore) -> Client:
        return await _live(store, client_id)

    view = policy_view(run_with_store(db, work), now)
    emit(as_json, view, policy_text(view))


def _write(
    db: str,
    client_id: str,
    make: Callable[[Client, int], ClientPolicy],
    server: Policy | None = None,
) -> dict[str, Any]:
    """Writes the policy `make` builds from the client as read (and now), audited; fails on a
    setting the client's kind (or the server's policy `server`) cannot have, or when the
    client changed meanwhile."""
    actor = cli_actor()

    async def work(store: SQLStore) -> Client:
        found = await _live(store, client_id)
        try:
            scheduled = make(found, actor.now)
            done = await store.admin().schedule_client_policy(
                client_id, scheduled, actor.now, actor, before=found.policy, server=server
            )
        except PolicyError as exc:
            fail(str(exc))
        if done is None:
            fail(f"client {client_id!r} was deleted meanwhile")
        if isinstance(done, Stale):
            fail(
                f"client {client_id!r}'s policy changed while this ran: nothing written, run again"
            )
        return done

    return policy_view(run_with_store(db, work), actor.now)


@policy.command("set")
@db_option
@click.argument("client_id")
@knob_options
@click.option(
    "--effective-at",
    help="When the change takes effect: ISO 8601 UTC (2026-12-12T09:00:00Z), Unix seconds, or "
    "+7d, +2h, +30m from now. Default: at once (with --report-only: no date, reported only).",
)
@click.option(
    "--report-only",
    is_flag=True,
    help="Until it takes effect, evaluate the change beside the policy in force and count what "
    "it would refuse (`baton report enforcement`), refusing nothing.",
)
@click.option("--json", "as_json", is_flag=True)
@server_policy_options(SERVER)
def policy_set(
    db: str,
    client_id: str,
    effective_at: str | None,
    report_only: bool,
    as_json: bool,
    **knobs: Any,
) -> None:
    """Schedule a change of the client's policy: the knobs given, over the settings in force
    (`default` gives a knob back to the server's option). It replaces any change pending; a
    signed notice goes to the client's notify URL."""
    server = server_policy(knobs, SERVER)
    if all(value is None for value in knobs.values()):
        flags = ", ".join(knob_flag(f.name) for f in fields(PolicySettings))
        fail(f"give at least one setting to change: {flags}")
    when: int | None = None
    if effective_at is not None:
        try:
            when = parse_instant(effective_at, cli_actor().now)
        except ValueError as exc:
            fail(f"--effective-at: {exc}")

    def make(found: Client, now: int) -> ClientPolicy:
        settings = changed_settings(found.policy.settings_at(now), knobs)
        at = now if when is None and not report_only else when
        return found.policy.schedule(settings, now, at, report_only, replace_all=True)

    view = _write(db, client_id, make, server)
    emit(as_json, view, policy_text(view))


@policy.command("cancel")
@db_option
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def policy_cancel(db: str, client_id: str, as_json: bool) -> None:
    """Cancel the client's scheduled policy change (the policy in force stays); a signed notice
    goes to the client's notify URL."""

    def make(found: Client, now: int) -> ClientPolicy:
        if found.policy.pending(now) is None:
            fail(f"client {client_id!r} has no policy change scheduled")
        return found.policy.cancel(now)

    view = _write(db, client_id, make)
    emit(as_json, view, policy_text(view))


@click.command("contact")
@db_option
@click.argument("client_id")
@click.option(
    "--email",
    "emails",
    multiple=True,
    help="The integrator's e-mail address; repeat for several (they replace those set).",
)
@click.option("--no-email", is_flag=True, help="Remove every e-mail contact.")
@click.option(
    "--notify-url",
    help="https URL (http only on 127.0.0.1 or [::1]) a signed notice of each scheduled or "
    'cancelled policy change is POSTed to; "" removes it.',
)
@click.option("--json", "as_json", is_flag=True)
def contact(
    db: str,
    client_id: str,
    emails: tuple[str, ...],
    no_email: bool,
    notify_url: str | None,
    as_json: bool,
) -> None:
    """Set whom a change of the client's policy is told to (without options: print it)."""
    if emails and no_email:
        fail("give --email or --no-email, not both")
    actor = cli_actor()

    async def work(store: SQLStore) -> Client:
        found = await _live(store, client_id)
        if not emails and not no_email and notify_url is None:
            return found
        contacts = () if no_email else emails or found.contacts
        url = found.notify_url if notify_url is None else notify_url or None
        try:
            done = await store.admin().set_client_contact(
                client_id, contacts, url, actor.now, actor
            )
        except ContactError as exc:
            fail(str(exc))
        if done is None:
            fail(f"client {client_id!r} was deleted meanwhile")
        return done

    done = run_with_store(db, work)
    payload = {
        "client_id": done.id,
        "contacts": list(done.contacts),
        "notify_url": done.notify_url,
    }
    text = "\n".join(
        [
            f"client_id:   {done.id}",
            f"contacts:    {' '.join(done.contacts) or '-'}",
            f"notify_url:  {done.notify_url or '-'}",
        ]
    )
    emit(as_json, payload, text)


COMMANDS = (policy, contact)
"""Joined to `baton client` (`baton.cli.clients`)."""
