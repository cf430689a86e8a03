"""`baton report enforcement`: the clients a scheduled policy change would break, with the
evidence and the notice to send them (issue 28). In process (Click's CliRunner), on a SQLite
file whose signals are written as the servers write them (`record_signals`)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from baton.cli import main
from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.signals import Refusal, SignalKind, Source
from baton.store.base import SignalCount
from baton.store.sql import SQLStore
from tests.support import migrated_store, register_client

DAY = 86_400


class World:
    """A database with a good client, a bad one and a quiet one, each with the same tightening
    (the leeway from 600 s to 60 s in two weeks, report-only)."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "baton.db"
        self.db = f"sqlite:///{self.path}"
        self.store: SQLStore = migrated_store(self.path)
        self.now = int(time.time())
        self.effective_at = self.now + 14 * DAY
        self.good = register_client(self.store, name="Good App").id
        self.bad = register_client(self.store, name="Bad App").id
        self.quiet = register_client(self.store, name="Quiet App").id
        for client_id in (self.good, self.bad, self.quiet):
            self.tighten(client_id)

    def tighten(self, client_id: str) -> None:
        policy = ClientPolicy().schedule(
            PolicySettings(leeway=60), self.now - DAY, self.effective_at, report_only=True
        )
        # Written as the admin store writes it (`clients.policy`): the report reads the row.
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE clients SET policy = ? WHERE id = ?", (policy.stored(), client_id))

    def record(self, *counts: SignalCount) -> None:
        anyio.run(self.store.record_signals, list(counts))


def signal(
    client_id: str,
    kind: SignalKind,
    count: int,
    at: int,
    delays: dict[int, int],
    reason: Refusal | None = None,
    grant_id: str | None = "gr_1",
    source: Source = Source.RESOURCE,
) -> SignalCount:
    return SignalCount(
        client_id,
        kind.value,
        None if reason is None else reason.value,
        source.value,
        grant_id,
        at - 60,
        at,
        count,
        delays,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    found = World(tmp_path)
    try:
        # The bad client keeps its old access token for 2 minutes after each refresh.
        stale = {118: 300, 121: 92, 130: 20}
        found.record(
            signal(found.bad, SignalKind.STALE_ACCESS, 412, found.now - 100, stale),
            signal(
                found.bad,
                SignalKind.WOULD_REFUSE,
                412,
                found.now - 100,
                stale,
                Refusal.LEEWAY,
            ),
            signal(found.bad, SignalKind.LEEWAY_RETRY, 3, found.now - 50, {5: 3}, None, "gr_2"),
            # The good client uses the new pair at once: only a late refresh, nothing refused.
            signal(found.good, SignalKind.LATE_REFRESH, 2, found.now - 30, {4: 2}),
            # Signals older than the window are not counted.
            signal(found.good, SignalKind.STALE_ACCESS, 9, found.now - 9 * DAY, {200: 9}),
        )
        yield found
    finally:
        anyio.run(found.store.close)


def baton(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> str:
    result = baton(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def report_json(world: World, *args: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        ok("report", "enforcement", "--db", world.db, "--json", *args)
    )
    return payload


def test_the_report_names_the_bad_client_with_its_counts_and_delays(world: World) -> None:
    clients = report_json(world)["clients"]
    assert [c["client_id"] for c in clients] == [world.bad]  # not the good one
    (bad,) = clients
    assert bad["affected"] is True
    assert bad["stale_access"]["count"] == 412
    assert bad["stale_access"]["p50_delay_seconds"] == 118
    assert bad["stale_access"]["p95_delay_seconds"] == 121
    assert bad["stale_access"]["last_seen"] == world.now - 100
    assert bad["leeway_retry"]["count"] == 3
    assert bad["would_refuse_by_rule"]["leeway"]["count"] == 412
    assert bad["scheduled"]["effective_at"] == world.effective_at
    assert bad["scheduled"]["report_only"] is True
    assert bad["scheduled"]["changes"] == [{"setting": "leeway", "from": 600, "to": 60}]


def test_all_lists_every_client_with_signals_affected_first(world: World) -> None:
    clients = report_json(world, "--all")["clients"]
    assert [(c["client_id"], c["affected"]) for c in clients] == [
        (world.bad, True),
        (world.good, False),
    ]  # the quiet client has no signal in the window
    good = clients[1]
    assert good["late_refresh"]["count"] == 2
    assert good["stale_access"]["count"] == 0  # nine days ago: outside the 7-day window


def test_since_widens_the_window(world: World) -> None:
    clients = report_json(world, "--all", "--since", "10d")["clients"]
    good = next(c for c in clients if c["client_id"] == world.good)
    assert good["stale_access"]["count"] == 9
    assert good["affected"] is True  # old tokens used 200 s after a refresh: 60 s will break it


def test_a_named_client_is_listed_whatever_it_did(world: World) -> None:
    clients = report_json(world, "--client", world.quiet, "--client", world.good)["clients"]
    assert [c["client_id"] for c in clients] == [world.quiet, world.good]
    assert not any(c["affected"] for c in clients)
    assert clients[0]["stale_access"]["count"] == 0


def test_an_unknown_client_is_refused_in_one_line(world: World) -> None:
    result = baton("report", "enforcement", "--db", world.db, "--client", "cl_nobody")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no client cl_nobody"


def test_csv_has_a_header_and_one_row_per_client(world: World) -> None:
    out = ok("report", "enforcement", "--db", world.db, "--csv", "--all")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["client_id"] for r in rows] == [world.bad, world.good]
    assert rows[0]["stale_access_count"] == "412"
    assert rows[0]["stale_access_p95_delay_seconds"] == "121"
    assert rows[0]["would_refuse_leeway"] == "412"
    assert rows[0]["changes"] == "leeway:600->60"
    assert rows[1]["affected"] == "False"


def test_text_shows_the_evidence_and_the_notice(world: World) -> None:
    out = ok("report", "enforcement", "--db", world.db, "--notice")
    assert f"{world.bad}  Bad App  AFFECTED" in out
    assert "stale access-token uses after a refresh: 412; p50 118 s, p95 121 s" in out
    assert "scheduled change from" in out and "(report-only): leeway 600 -> 60" in out
    assert "report-only refusals: leeway 412" in out
    assert "To the developers of Bad App" in out
    assert "exchanged 412 times in the last 7 days, typically 118 s after the exchange" in out
    assert "Use the new access token from each refresh response at once" in out
    assert "Good App" not in out


def test_notice_in_json_only_for_the_affected(world: World) -> None:
    clients = report_json(world, "--all", "--notice")["clients"]
    assert "To the developers of Bad App" in clients[0]["notice"]
    assert "notice" not in clients[1]


def test_nothing_affected_says_so(tmp_path: Path) -> None:
    store = migrated_store(tmp_path / "baton.db")
    anyio.run(store.close)
    out = ok("report", "enforcement", "--db", f"sqlite:///{tmp_path / 'baton.db'}")
    assert out.startswith("no client affected since ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--json", "--csv"), "--json and --csv: choose one"),
        (("--all", "--client", "cl_x"), "--client and --all: choose one"),
    ],
)
def test_contradictory_options_are_refused(
    world: World, args: tuple[str, ...], message: str
) -> None:
    result = baton("report", "enforcement", "--db", world.db, *args)
    assert result.exit_code == 1
    assert message in result.stderr


def test_a_window_must_be_a_duration(world: World) -> None:
    result = baton("report", "enforcement", "--db", world.db, "--since", "a week")
    assert result.exit_code == 2
    assert "is not a window such as 7d" in result.stderr


def test_a_rehearsal_clock_moves_the_window(world: World, tmp_path: Path) -> None:
    """With the server's `--clock-offset-file`, the window ends at the server's now: eight days
    ahead, the signals of an hour ago are out of the 7-day window."""
    offset = tmp_path / "offset"
    offset.write_text(str(8 * DAY))
    clients = report_json(world, "--all", "--clock-offset-file", str(offset))["clients"]
    assert clients == []


def test_the_server_defaults_come_from_the_serve_options(world: World) -> None:
    """A server whose own leeway is already 60 s: the client's change shortens nothing, so its
    stale uses alone would not make it affected (its report-only refusals still do)."""
    (bad,) = report_json(world, "--leeway", "60")["clients"]
    assert bad["in_force"]["leeway"] == 60
    assert bad["scheduled"]["changes"] == []


@pytest.mark.parametrize("since", ["99999999999999999999d", "367d", "0"])
def test_a_window_beyond_a_year_is_refused(world: World, since: str) -> None:
    result = baton("report", "enforcement", "--db", world.db, "--since", since)
    assert result.exit_code == 2, result.stdout
    assert "Traceback" not in result.stderr and "--since" in result.stderr


def test_csv_cells_a_spreadsheet_would_run_are_quoted(world: World) -> None:
    """A client's name is chosen by whoever registered it (dynamic registration included): in
    the CSV, a name a spreadsheet would run as a formula starts with `'` (OWASP CSV injection)."""
    with sqlite3.connect(world.path) as conn:
        conn.execute(
            "UPDATE clients SET name = ? WHERE id = ?", ('=HYPERLINK("http://x")', world.bad)
        )
        conn.execute("UPDATE clients SET name = ? WHERE id = ?", ("-2+3", world.good))
    out = ok("report", "enforcement", "--db", world.db, "--csv", "--all")
    rows = {r["client_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows[world.bad]["name"] == '\'=HYPERLINK("http://x")'
    assert rows[world.good]["name"] == "'-2+3"
    assert rows[world.bad]["stale_access_count"] == "412"
