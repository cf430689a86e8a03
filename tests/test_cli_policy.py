"""`baton client policy show|set|cancel` and `baton client contact` (issue 28), as an operator
uses them: a change scheduled for a date, report-only until then, shown, cancelled; a knob given
back to the server's default; whom a change is told to. Every write is audited in words and,
when the client has a notify URL, leaves a notice in the outbox (no secret in it). Bad input is
one `error:` line and exit status 1, never a traceback.

In-process (Click's CliRunner) on a SQLite file; the commands read the real time."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from baton.cli import main
from baton.core.client_policy import PolicySettings
from baton.core.clock import FakeClock
from baton.store.schema import audit_log, webhook_outbox
from baton.store.sql import SQLStore
from tests.support import migrated_store, register_client, running_app

WEEK = 7 * 86_400


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("BATON_DB", "BATON_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "baton.db"
    anyio.run(migrated_store(path).close)
    return f"sqlite:///{path}"


@pytest.fixture
def store(db: str) -> Any:
    opened = SQLStore.open(db)
    yield opened
    anyio.run(opened.close)


def baton(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def ok(*args: str) -> dict[str, Any]:
    result = baton(*args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def failed(result: Result, fragment: str) -> None:
    """Exit status 1, nothing on stdout, one `error:` line naming `fragment`, no traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and fragment in line, line


def audited(store: SQLStore, target: str) -> list[tuple[str, dict[str, Any]]]:
    query = (
        select(audit_log.c.action, audit_log.c.detail)
        .where(audit_log.c.target_id == target)
        .order_by(audit_log.c.id)
    )
    rows = anyio.run(store.inspect, lambda conn: list(conn.execute(query).all()))
    return [(action, json.loads(detail) if detail else {}) for action, detail in rows]


def outbox_rows(store: SQLStore) -> list[Any]:
    query = select(webhook_outbox).order_by(webhook_outbox.c.id)
    return anyio.run(store.inspect, lambda conn: list(conn.execute(query).mappings().all()))


def test_every_knob_of_the_policy_is_an_option_of_set() -> None:
    result = baton("client", "policy", "set", "--help")
    for knob in fields(PolicySettings):
        assert "--" + knob.name.replace("_", "-") + " " in result.stdout, knob.name


def test_a_change_scheduled_report_only_is_shown_then_cancelled(db: str, store: SQLStore) -> None:
    client = register_client(store)
    before = int(time.time())
    scheduled = ok(
        "client", "policy", "set", "--db", db, client.id,
        "--leeway", "60", "--retry", "strict", "--effective-at", "+7d", "--report-only",
    )  # fmt: skip
    after = int(time.time())
    assert scheduled["in_force"] == {"settings": {}, "since": None}
    pending = scheduled["scheduled"]
    assert pending["settings"] == {"leeway": 60, "retry": "strict"}
    assert pending["report_only"] is True
    assert before + WEEK <= pending["effective_at"] <= after + WEEK
    assert ok("client", "policy", "show", "--db", db, client.id) == scheduled

    text = baton("client", "policy", "show", "--db", db, client.id).stdout
    assert "leeway 60 s, retry strict from " in text and "report-only until then" in text

    cancelled = ok("client", "policy", "cancel", "--db", db, client.id)
    assert cancelled["scheduled"] is None and cancelled["in_force"]["settings"] == {}
    failed(baton("client", "policy", "cancel", "--db", db, client.id), "no policy change")

    actions = audited(store, client.id)
    assert [action for action, _ in actions[-2:]] == [
        "client.schedule_policy",
        "client.cancel_policy",
    ]
    assert "scheduled leeway 60 s, retry strict from " in actions[-2][1]["change"]
    assert "cancelled the change scheduled for " in actions[-1][1]["change"]
    assert not outbox_rows(store)  # no notify URL: no notice


def test_a_change_without_a_date_applies_at_once_and_default_gives_a_knob_back(
    db: str, store: SQLStore
) -> None:
    client = register_client(store)
    now = int(time.time())
    first = ok("client", "policy", "set", "--db", db, client.id, "--access-ttl", "10m")
    assert first["in_force"]["settings"] == {"access_ttl": 600}
    assert now <= first["in_force"]["since"] <= int(time.time())
    assert first["scheduled"] is None
    # The knobs not given keep their value; `default` gives one back to the server's option.
    second = ok(
        "client", "policy", "set", "--db", db, client.id,
        "--access-ttl", "default", "--leeway", "30",
        "--grant-types", "authorization_code,refresh_token",
    )  # fmt: skip
    assert second["in_force"]["settings"] == {
        "leeway": 30,
        "grant_types": ["authorization_code", "refresh_token"],
    }
    # An undated report-only change: reported until dated, never in force.
    undated = ok(
        "client", "policy", "set", "--db", db, client.id, "--retry", "fork", "--report-only"
    )
    assert undated["scheduled"]["effective_at"] is None
    assert undated["scheduled"]["settings"]["retry"] == "fork"
    assert undated["in_force"]["settings"]["leeway"] == 30


def test_bad_input_is_one_line_and_writes_nothing(db: str, store: SQLStore) -> None:
    confidential = register_client(store)
    public = register_client(store, public=True)
    policy = ("client", "policy", "set", "--db", db)
    failed(baton(*policy, "cl_nobody", "--leeway", "5"), "no client 'cl_nobody'")
    failed(baton(*policy, confidential.id), "give at least one setting")
    failed(baton(*policy, confidential.id, "--leeway", "soon"), "--leeway")
    failed(baton(*policy, confidential.id, "--retry", "sometimes"), "--retry must be one of")
    failed(baton(*policy, confidential.id, "--rotate", "maybe"), "--rotate takes yes or no")
    failed(baton(*policy, confidential.id, "--grant-types", "implicit"), "unsupported grant type")
    failed(baton(*policy, confidential.id, "--access-ttl", "0"), "access_ttl must be between")
    failed(
        baton(*policy, confidential.id, "--leeway", "5", "--effective-at", "next tuesday"),
        "--effective-at",
    )
    # RFC 9700 §4.14.2: a public client's refresh tokens always rotate.
    failed(baton(*policy, public.id, "--rotate", "no"), "always rotate")
    failed(baton(*policy, public.id, "--require-pkce", "no"), "always uses PKCE")
    failed(baton("client", "policy", "show", "--db", db, "cl_nobody"), "no client")
    assert not [a for a, _ in audited(store, confidential.id) + audited(store, public.id)]


def test_the_database_comes_from_baton_db_too(db: str, store: SQLStore) -> None:
    client = register_client(store)
    result = baton("client", "policy", "show", client.id, "--json", env={"BATON_DB": db})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["client_id"] == client.id


def test_contact_is_checked_audited_and_each_change_leaves_a_notice(
    db: str, store: SQLStore
) -> None:
    client = register_client(store)
    contact = ("client", "contact", "--db", db, client.id)
    failed(baton(*contact, "--email", "not-an-address"), "not an email address")
    failed(baton(*contact, "--notify-url", "http://example.com/hook"), "must use https")
    failed(baton(*contact, "--notify-url", "ftp://example.com/hook"), "https URL")
    url = "https://integrator.example/baton/notices?key=s3cr3t"
    shown = ok(*contact, "--email", "dev@integrator.example", "--email", "ops@integrator.example",
               "--notify-url", url)  # fmt: skip
    assert shown == {
        "client_id": client.id,
        "contacts": ["dev@integrator.example", "ops@integrator.example"],
        "notify_url": url,
    }
    assert ok(*contact) == shown  # no option: printed as it is
    ((action, detail),) = audited(store, client.id)
    # The URL's query may hold a credential: the audit log keeps it out.
    assert (action, detail["notify_url"]) == (
        "client.contact",
        "https://integrator.example/baton/notices",
    )

    ok("client", "policy", "set", "--db", db, client.id, "--leeway", "60", "--effective-at", "+1d")
    ok("client", "policy", "cancel", "--db", db, client.id)
    rows = outbox_rows(store)
    assert [(r["event_type"], r["destination"]) for r in rows] == [
        ("policy.scheduled", url),
        ("policy.cancelled", url),
    ]
    notice = json.loads(rows[0]["payload"])
    assert notice["client_id"] == client.id and notice["settings"] == {"leeway": 60}
    assert notice["report_only"] is False and notice["jti"]
    assert "s3cr3t" not in json.dumps([dict(r) for r in rows], default=str).replace(url, "")

    removed = ok(*contact, "--no-email", "--notify-url", "")
    assert removed["contacts"] == [] and removed["notify_url"] is None
    ok("client", "policy", "set", "--db", db, client.id, "--leeway", "90")
    assert len(outbox_rows(store)) == 2  # no notify URL any more: no notice


def test_a_running_server_follows_a_change_made_on_the_command_line(tmp_path: Path) -> None:
    """The server cached the client at its first token; the policy is one of the columns each
    request confirms, so the next token already has the new lifetime."""
    clock = FakeClock(int(time.time()))
    with running_app(tmp_path, clock=clock) as (http, store, _clock):
        client = register_client(store)
        data = {"grant_type": "client_credentials", "scope": "read"}
        assert http.post("/token", data=data, auth=client.basic).json()["expires_in"] == 3600
        db = f"sqlite:///{tmp_path / 'baton.db'}"
        ok("client", "policy", "set", "--db", db, client.id, "--access-ttl", "2m")
        clock.advance(2)  # the command's clock is the real one: past its instant
        assert http.post("/token", data=data, auth=client.basic).json()["expires_in"] == 120


def test_an_access_ttl_above_the_servers_is_refused(
    db: str, store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's `--access-ttl` (3600 s by default; its variable, or `--server-access-ttl`,
    as `baton serve` and `baton report enforcement` take it) bounds a client's: a signing key
    stays published only that long."""
    monkeypatch.delenv("BATON_ACCESS_TTL", raising=False)
    client = register_client(store)
    set_ = ("client", "policy", "set", "--db", db, client.id, "--access-ttl", "2h")
    failed(baton(*set_), "must not exceed the server's --access-ttl (3600 s)")
    assert ok("client", "policy", "show", "--db", db, client.id)["in_force"]["settings"] == {}
    result = baton(*set_, "--json", env={"BATON_ACCESS_TTL": "7200"})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["in_force"]["settings"] == {"access_ttl": 7200}
    failed(
        baton(*set_[:-1], "3h", "--server-access-ttl", "7200"),
        "must not exceed the server's --access-ttl (7200 s)",
    )


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:59:59-14:00", "10000000000000", "0001-01-01T00:00:00+01:00"]
)
def test_an_effective_date_past_the_year_9999_is_one_error_line(
    db: str, store: SQLStore, when: str
) -> None:
    client = register_client(store)
    result = baton(
        "client", "policy", "set", "--db", db, client.id, "--leeway", "60",
        "--report-only", "--effective-at", when,
    )  # fmt: skip
    failed(result, "--effective-at: ")


def test_a_report_only_change_dated_now_is_one_error_line(db: str, store: SQLStore) -> None:
    client = register_client(store)
    result = baton(
        "client", "policy", "set", "--db", db, client.id, "--leeway", "60",
        "--report-only", "--effective-at", "2020-01-01T00:00:00Z",
    )  # fmt: skip
    failed(result, "a report-only change needs a date after now")
