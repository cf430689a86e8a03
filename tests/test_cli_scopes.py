"""`baton scope describe | list | remove`: the words the consent page shows for a scope, on
SQLite and PostgreSQL, with `--json` and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from click.testing import CliRunner, Result

from baton.cli import main
from tests.support import migrated_store


def db_url(database: Path | str) -> str:
    """The `--db` of the test's database, migrated."""
    if isinstance(database, str):
        return database
    path = database / "baton.db"
    anyio.run(migrated_store(path).close)
    return f"sqlite:///{path}"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_describe_list_and_remove_a_scope(database: Path | str) -> None:
    db = db_url(database)
    made = run("scope", "describe", "--db", db, "calendar:read", "Read your  calendars", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output) == {
        "name": "calendar:read",
        "description": "Read your calendars",  # white space made one line
        "created": True,
    }
    again = run("scope", "describe", "--db", db, "calendar:read", "See your calendars")
    assert again.exit_code == 0 and "redescribed scope calendar:read" in again.output
    assert run("scope", "describe", "--db", db, "billing", "See your invoices").exit_code == 0

    listed = run("scope", "list", "--db", db, "--json")
    assert listed.exit_code == 0, listed.output
    scopes = json.loads(listed.output)["scopes"]
    assert [(s["name"], s["description"]) for s in scopes] == [
        ("billing", "See your invoices"),
        ("calendar:read", "See your calendars"),
    ]
    assert "calendar:read\tSee your calendars" in run("scope", "list", "--db", db).output

    removed = run("scope", "remove", "--db", db, "billing", "--json")
    assert removed.exit_code == 0 and json.loads(removed.output)["removed"] is True
    names = [
        s["name"] for s in json.loads(run("scope", "list", "--db", db, "--json").output)["scopes"]
    ]
    assert names == ["calendar:read"]
    gone = run("scope", "remove", "--db", db, "billing")
    assert gone.exit_code == 1 and "no described scope 'billing'" in gone.output


def test_a_bad_name_or_description_is_refused_in_one_line(tmp_path: Path) -> None:
    db = db_url(tmp_path)
    for name in ("two words", 'quo"te', ""):
        refused = run("scope", "describe", "--db", db, name, "words")
        assert refused.exit_code == 1 and "is not" in refused.output, refused.output
    for text in ("", "   ", "x" * 301, "bell\x07"):
        refused = run("scope", "describe", "--db", db, "read", text)
        assert refused.exit_code == 1 and "description" in refused.output, refused.output
    empty = run("scope", "list", "--db", db)
    assert empty.exit_code == 0 and "no described scopes" in empty.output
