"""`baton report enforcement`: which clients a scheduled policy change would break, with the
evidence, and the notice to send each one (issue 28).

A client is *affected* when its report-only policy would have refused one of its requests in
the window, or when it used old access tokens after a refresh while its scheduled change
shortens how long they keep working (`baton.core.notice.affected`). Without `--client` or
`--all` the report lists the affected clients; `--all` lists every client with a signal in the
window, the affected first; `--client ID` (repeatable) lists those clients whatever they did.
The figures come from the signals the servers counted (`client_signals`, kept
`--signal-retention` days): never from tokens. The server's own policy (what a client that sets
nothing gets) is read from the same options and variables as `baton serve`'s.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import click

from baton.cli.common import click_option, db_option, fail, run_with_store
from baton.config import BY_NAME
from baton.core.clock import SystemClock
from baton.core.notice import CSV_COLUMNS, Subject, affected, evidence, evidence_row, notice, utc
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.signals import Health, Refusal, SignalKind
from baton.server.runtime.rehearsal import OffsetFileClock
from baton.store.base import Client
from baton.store.sql import SQLStore

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_WINDOW = re.compile(r"(\d+)([smhdw]?)")


class Window(click.ParamType[int, Any]):
    """A window back from now: `7d`, `12h`, `30m`, `3600s` or `3600` (seconds)."""

    name = "window"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        found = _WINDOW.fullmatch(str(value).strip())
        seconds = 0 if found is None else int(found[1]) * _UNITS[found[2] or "s"]
        if seconds <= 0:
            self.fail(f"{value!r} is not a window such as 7d, 12h, 30m or 3600s", param, ctx)
        return seconds


@click.group()
def report() -> None:
    """Reports on the integrations: who a scheduled policy change would break."""


def _server_policy(options: dict[str, Any]) -> Policy:
    lifetimes = Lifetimes(
        access_ttl=options["access_ttl"],
        refresh_idle_ttl=options["refresh_idle_ttl"],
        refresh_absolute_ttl=options["refresh_absolute_ttl"],
        leeway=options["leeway"],
    )
    return Policy(lifetimes, RetryPolicy(options["retry_policy"]))


def _policy_options(command: Any) -> Any:
    """The options of `baton serve` that make the server's policy, and its rehearsal clock (a
    report on a rehearsing server counts its window back from the server's now)."""
    for name in (
        "clock_offset_file",
        "retry_policy",
        "refresh_absolute_ttl",
        "refresh_idle_ttl",
        "access_ttl",
        "leeway",
    ):
        command = click_option(BY_NAME[name])(command)
    return command


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
@_policy_options
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
    server = _server_policy(policy)
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
            writer.writerow(evidence_row(evidence(subject, server, health, now)))
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
