"""`baton report enforcement`: which clients a scheduled policy change would break, with the
evidence, and the notice to send each one (issue 28).

A client is *affected* when its report-only policy would have refused one of its requests in
the window, or when it used old access tokens after a refresh while its scheduled change
shortens how long they keep working (`baton.core.notice.affected`). Without `--client` or
`--all` the report lists the affected clients; `--all` lists every client with a signal in the
window, the affected first; `--client ID` (repeatable) lists those clients whatever they did.
The figures come from the signals the servers counted (`client_signals`, kept
`--signal-retention` days): never from tokens. The server's own policy (what a client that sets
nothing gets) is read from the same options and variables as `baton serve`'s
(`server_policy_options`, which `baton client policy set` shares). In `--csv`, a cell that a
spreadsheet would run as a formula (a client's name is chosen by whoever registered it, dynamic
registration included) starts with `'`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import click

from baton.cli.common import click_option, db_option, fail, run_with_store
from baton.config import BY_NAME
from baton.config.declaration import Option
from baton.core.clock import SystemClock
from baton.core.notice import CSV_COLUMNS, Subject, affected, evidence, evidence_row, notice, utc
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.signals import Health, Refusal, SignalKind
from baton.server.runtime.rehearsal import OffsetFileClock
from baton.store.admin import MAX_WINDOW, parse_duration
from baton.store.base import Client
from baton.store.sql import SQLStore


class Window(click.ParamType[int, Any]):
    """A window back from now: `7d`, `12h`, `30m`, `3600s` or `3600` (seconds), at most
    `MAX_WINDOW` (a year: signals are kept far less long)."""

    name = "window"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            seconds = 0
        if seconds <= 0:
            self.fail(f"{value!r} is not a window such as 7d, 12h, 30m or 3600s", param, ctx)
        if seconds > MAX_WINDOW:
            self.fail(f"{value!r} is longer than {MAX_WINDOW // 86_400} days", param, ctx)
        return seconds


@click.group()
def report() -> None:
    """Reports on the integrations: who a scheduled policy change would break."""


# The options of `baton serve` that make the server's policy (what a client that sets nothing
# gets), in the order `--help` shows them.
SERVER_POLICY = ("leeway", "access_ttl", "refresh_idle_ttl", "refresh_absolute_ttl", "retry_policy")


def _prefixed(option: Option, prefix: str) -> Callable[[Any], Any]:
    """`option` as `baton serve` takes it, under the flag `--<prefix>-<name>` (its variable,
    type, bounds and default unchanged): for a command whose own `--leeway` is something else."""
    return click.option(
        f"--{prefix}-" + option.flag[2:],
        f"{prefix}_{option.name}",
        envvar=option.env,
        show_envvar=True,
        default=option.default,
        show_default=True,
        type=click.Choice(option.choices)
        if option.choices
        else click.IntRange(min=option.minimum, max=option.maximum),
        help=f"The server's {option.flag}: " + option.help,
    )


def server_policy_options(prefix: str = "") -> Callable[[Any], Any]:
    """The options (and variables) of `baton serve` that make the server's policy, as its flags
    (or, with `prefix`, `--<prefix>-access-ttl`...: `baton client policy set`, whose
    `--access-ttl` is the client's): `server_policy` reads them back."""

    def decorate(command: Any) -> Any:
        for name in reversed(SERVER_POLICY):
            option = BY_NAME[name]
            command = (click_option(option) if not prefix else _prefixed(option, prefix))(command)
        return command

    return decorate


def server_policy(options: dict[str, Any], prefix: str = "") -> Policy:
    """The server's policy from `server_policy_options(prefix)`'s values, taken out of
    `options` (a command's keyword arguments)."""
    key = f"{prefix}_" if prefix else ""
    values = {name: options.pop(key + name) for name in SERVER_POLICY}
    lifetimes = Lifetimes(
        access_ttl=values["access_ttl"],
        refresh_idle_ttl=values["refresh_idle_ttl"],
        refresh_absolute_ttl=values["refresh_absolute_ttl"],
        leeway=values["leeway"],
    )
    return Policy(lifetimes, RetryPolicy(values["retry_policy"]))


def _csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, not runs as a formula (OWASP "CSV Injection"):
    a text starting with = + - @, a tab or a carriage return gets a leading `'`."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@report.command("enforcement")
@db_option
@click.option(
    "--client", "client_ids", multiple=True, help="Only this client (repeat for several)."
)
@click.option(
    "--all", "every", is_flag=True, help="Every client with a signal, not only the affected."
)
@click.option(
    "--since",
    "window",
    type=Window(),
    default="7d",
    show_default=True,
    help="The window back from now: 7d, 12h, 30m, 3600s.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: a header, then one row per client.")
@click.option(
    "--notice", "with_notice", is_flag=True, help="The plain-words notice for each affected client."
)
@server_policy_options()
@click_option(BY_NAME["clock_offset_file"])
def enforcement(
    db: str,
    client_ids: tuple[str, ...],
    every: bool,
    window: int,
    as_json: bool,
    as_csv: bool,
    with_notice: bool,
    **policy: Any,
) -> None:
    """List the clients the scheduled policy changes would break, with the evidence: stale
    access-token uses after a refresh, retries, reuse, late refreshes, what the report-only
    policy would have refused, and the share of grants that would break."""
    if as_json and as_csv:
        fail("--json and --csv: choose one")
    if as_csv and with_notice:
        fail("--notice writes text: use it without --csv (with --json it adds a `notice` member)")
    if client_ids and every:
        fail("--client and --all: choose one")
    offset_file = policy.pop("clock_offset_file")
    server = server_policy(policy)
    now = (OffsetFileClock(offset_file) if offset_file else SystemClock()).now()
    since = now - window

    async def work(store: SQLStore) -> list[tuple[Subject, Health]]:
        ids = list(dict.fromkeys(client_ids)) or None
        healths = {h.client_id: h for h in await store.client_health(ids, since, now)}
        found: list[tuple[Subject, Health]] = []
        for client_id in ids or sorted(healths):
            client: Client | None = await store.admin().client(client_id)
            if client is None:
                if ids is not None:
                    fail(f"no client {client_id}")
                continue  # deleted since its signals were counted
            health = healths.get(client_id) or Health(client_id, since)
            found.append((Subject.of(client), health))
        return found

    rows = run_with_store(db, work)
    marked = [(s, h, affected(s, server, h, now)) for s, h in rows]
    if not client_ids:
        if not every:
            marked = [m for m in marked if m[2]]
        marked.sort(key=lambda m: (not m[2], m[0].client_id))
    if as_json:
        clients = []
        for subject, health, hit in marked:
            found = evidence(subject, server, health, now)
            if with_notice and hit:
                found["notice"] = notice(subject, server, health, now)
            clients.append(found)
        click.echo(json.dumps({"since": since, "until": now, "clients": clients}))
        return
    if as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for subject, health, _hit in marked:
            row = evidence_row(evidence(subject, server, health, now))
            writer.writerow({name: _csv_cell(value) for name, value in row.items()})
        click.echo(out.getvalue(), nl=False)
        return
    if not marked:
        click.echo(f"no client affected since {utc(since)}" if not every else "no signals")
        return
    blocks = []
    for subject, health, hit in marked:
        text = describe(evidence(subject, server, health, now))
        if with_notice and hit:
            text += "\n\n" + notice(subject, server, health, now)
        blocks.append(text)
    click.echo(f"since {utc(since)} until {utc(now)}\n\n" + "\n\n".join(blocks))


_LABELS = {
    SignalKind.STALE_ACCESS: "stale access-token uses after a refresh",
    SignalKind.LEEWAY_RETRY: "refresh retries inside the leeway",
    SignalKind.REUSE: "reuse detections",
    SignalKind.LATE_REFRESH: "refreshes after the access token expired",
}


def _seen(tally: dict[str, Any]) -> str:
    if not tally["count"]:
        return "0"
    parts = [str(tally["count"])]
    if tally["p50_delay_seconds"] is not None:
        parts.append(f"p50 {tally['p50_delay_seconds']} s, p95 {tally['p95_delay_seconds']} s")
    parts.append(f"last {utc(tally['last_seen'])}")
    return "; ".join(parts)


def describe(found: dict[str, Any]) -> str:
    """One client's evidence, as the text report prints it."""
    head = f"{found['client_id']}  {found['name']}  " + (
        "AFFECTED" if found["affected"] else "not affected"
    )
    lines = [head]
    change = found["scheduled"]
    if change is None:
        lines.append("  scheduled change: none")
    else:
        when = (
            "undated" if change["effective_at"] is None else f"from {utc(change['effective_at'])}"
        )
        what = (
            ", ".join(
                f"{c['setting']} {_value(c['from'])} -> {_value(c['to'])}"
                for c in (change["changes"])
            )
            or "no setting changes"
        )
        mode = " (report-only)" if change["report_only"] else ""
        lines.append(f"  scheduled change {when}{mode}: {what}")
    for kind, label in _LABELS.items():
        lines.append(f"  {label}: {_seen(found[kind.value])}")
    by_rule = found["would_refuse_by_rule"]
    refused = ", ".join(
        f"{reason.value} {by_rule[reason.value]['count']}"
        for reason in Refusal
        if reason in by_rule
    )
    lines.append(f"  report-only refusals: {refused or 'none'}")
    share = found["breaking_share"]
    lines.append(
        f"  grants that would break: {found['grants_breaking']} of "
        f"{max(found['active_grants'], found['grants_breaking'])}"
        + ("" if share is None else f" ({share:.0%})")
    )
    return "\n".join(lines)


def _value(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, list):
        return ",".join(value) or "none"
    return json.dumps(value) if isinstance(value, bool) else str(value)
