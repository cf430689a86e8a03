"""`baton events list`: the security events, newest first, as the admin API's `GET
/security-events` lists them (reuse detected, sign-in lockouts, clients disabled).

`baton audit export`: the audit log as JSON Lines from a cursor, one row per line in ascending
id order, as the admin API's `GET /audit/export` answers it (the same rows, the same lines): a
script or a SIEM shipper reads what came after the last id it kept, and never misses a row nor
gets one twice (`baton.store.sql.records.RecordStore.audit_after`). The id to go on after is
printed on stderr, so stdout is only the rows.
"""

from __future__ import annotations

import click

from baton.cli.common import db_option, emit, fail, run_with_store
from baton.core.vocabulary import SecurityEventKind
from baton.server.admin.api_records import event_item
from baton.store.admin import AuditRow
from baton.store.base import SecurityEvent
from baton.store.sql import SQLStore
from baton.store.sql.records import EXPORT_MAX, AuditBusy, audit_line


@click.group()
def audit() -> None:
    """The audit log: who did what, when, from where."""


@audit.command("export")
@db_option
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The last id already read (0: from the start).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, EXPORT_MAX),
    default=1000,
    show_default=True,
    help="At most this many rows.",
)
def audit_export(db: str, after: int, limit: int) -> None:
    """Print the audit rows after --after as JSON lines (ascending ids); then, on stderr,
    `next-after: <id>` to pass as --after next time."""

    async def work(store: SQLStore) -> list[AuditRow]:
        return await store.admin().audit_after(after, limit)

    try:
        rows = run_with_store(db, work)
    except AuditBusy:
        fail(
            "audit rows are being written without a pause (PostgreSQL): nothing was printed; "
            "run the same command again"
        )
    for row in rows:
        click.echo(audit_line(row))
    click.echo(f"next-after: {rows[-1].id if rows else after}", err=True)


@click.group()
def events() -> None:
    """Security events: refresh token and code reuse, sign-in lockouts, clients disabled."""


@events.command("list")
@db_option
@click.option(
    "--kind", type=click.Choice([k.value for k in SecurityEventKind]), help="Only this kind."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def events_list(db: str, kind: str | None, limit: int, as_json: bool) -> None:
    """List the newest security events (--limit of them), newest first."""

    async def work(store: SQLStore) -> list[SecurityEvent]:
        return (await store.admin().security_events(kind, None, limit))[0]

    rows = [event_item(e) for e in run_with_store(db, work)]
    lines = [f"{'ID':<8} {'WHEN':<11} {'KIND':<20} {'USER':<16} {'CLIENT':<25} GRANT"]
    lines += [
        f"{r['id']:<8} {r['occurred_at']:<11} {r['kind']:<20} {r['username'] or '-':<16} "
        f"{r['client_id'] or '-':<25} {r['grant_id'] or '-'}"
        for r in rows
    ]
    emit(as_json, {"events": rows}, "\n".join(lines) if rows else "no security events")
