"""The `baton` command: serve, migrate, and manage clients, users and grants.

Every command that touches the database takes `--db` (or `BATON_DB`); a flag always wins over
its environment variable. `--json` prints one JSON object on stdout; errors go to stderr with
exit status 1 (2 for a config file Baton refuses), as one line without a traceback unless
`baton --debug` (`baton.script`). The options of `serve` (and of `config show`) are generated
from their declarations in `baton.config`.

One module per command group: `serve` (with `config show`), `db`, `clients`, `consents`,
`users`, `grants`, `keys`, `audit`, `report`, `demo`; what they share is in `common`. `main`
below is the group they join (`baton.script` runs it, and so does `python -m baton.cli`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, MutableMapping

import click

from baton import __version__

# Each command of `main`: (its module in baton.cli, the attribute). A module is imported when
# its command runs (or `--help` lists it), so `baton serve` imports none of the others (their
# tables, the admin store, the demo's terminal renderer).
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "config": ("serve", "config_group"),
    "db": ("db", "db"),
    "client": ("clients", "client"),
    "user": ("users", "user"),
    "grants": ("grants", "grants"),
    "keys": ("keys", "keys"),
    "demo": ("demo", "demo"),
    "scope": ("scopes", "scope"),
    "upstream": ("upstreams", "upstream"),
    "consent": ("consents", "consent"),
    "audit": ("audit", "audit"),
    "events": ("audit", "events"),
    "report": ("report", "report"),
}


class LazyCommands(MutableMapping[str, click.Command]):
    """`main.commands`: every name of `COMMANDS`, each command imported on first access."""

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        self.table = dict(table)
        self.loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded:
            module, attribute = self.table[name]  # KeyError: no such command
            command = getattr(importlib.import_module(f"baton.cli.{module}"), attribute)
            if name == "user":  # `baton user mfa-...` live in a module of their own
                from baton.cli import mfa

                for sub in mfa.COMMANDS:
                    command.add_command(sub)
            self.loaded[name] = command
        return self.loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self.table and name not in self.loaded:
            raise KeyError(name)
        self.table.pop(name, None)
        self.loaded.pop(name, None)  # a command not yet loaded is in the table only

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.table, *self.loaded]))

    def __len__(self) -> int:
        return len(self.table.keys() | self.loaded.keys())


@click.group()
@click.version_option(version=__version__, prog_name="baton")
@click.option(
    "--debug",
    is_flag=True,
    help="On failure, show the traceback rather than one line (or set BATON_DEBUG=1).",
)
def main(debug: bool) -> None:
    """Baton: an OAuth 2.0 authorization server with safe rotating refresh tokens."""
    if debug:
        os.environ["BATON_DEBUG"] = "1"  # read by `baton.script.one_line`, and by workers


main.commands = LazyCommands(COMMANDS)

__all__ = ["main"]
