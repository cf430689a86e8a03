"""`baton` imports a command's module only when that command runs (or `--help` lists it)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from baton.cli import COMMANDS, LazyCommands, main

# What `import baton.cli` must not load: the admin commands' store and tables, the migrations,
# the demo's terminal renderer, plots.
HEAVY = ("rich", "alembic", "sqlalchemy", "matplotlib", "baton.store", "baton.server.app")


def test_importing_the_command_loads_no_command_module() -> None:
    script = (
        "import json, sys\nimport baton.cli\n"
        "print(json.dumps(sorted(m for m, module in sys.modules.items() if module)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert [m for m in loaded if m.startswith(HEAVY)] == []
    assert [m for m in loaded if m.startswith("baton.cli.")] == []


def test_help_lists_every_command_and_user_keeps_its_mfa_commands() -> None:
    shown = CliRunner().invoke(main, ["--help"]).output
    for name in COMMANDS:
        assert f"\n  {name} " in shown
    assert {"mfa-require", "mfa-reset", "mfa-status"} <= set(main.commands["user"].commands)  # type: ignore[attr-defined]


def test_a_command_not_yet_loaded_can_be_removed_and_an_unknown_one_cannot() -> None:
    """`del group.commands[name]` (a plugin hiding a command) works before the command was
    ever loaded, imports nothing, and removes it; a name in neither table is a KeyError."""
    commands = LazyCommands({"demo": ("demo", "demo"), "keys": ("keys", "keys")})
    del commands["demo"]
    assert "demo" not in commands and list(commands) == ["keys"] and len(commands) == 1
    assert commands.loaded == {}  # nothing was imported to remove it
    commands["extra"] = click.Command("extra")
    del commands["extra"]
    assert list(commands) == ["keys"]
    for gone in ("demo", "extra", "no-such-command"):
        with pytest.raises(KeyError):
            del commands[gone]
