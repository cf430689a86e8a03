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

import os

import click

from baton import __version__
from baton.cli import (
    audit,
    clients,
    consents,
    db,
    demo,
    grants,
    keys,
    mfa,
    report,
    scopes,
    serve,
    upstreams,
    users,
)


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


main.add_command(serve.serve)
main.add_command(serve.config_group)
main.add_command(db.db)
main.add_command(clients.client)
main.add_command(users.user)
for command in mfa.COMMANDS:
    users.user.add_command(command)
main.add_command(grants.grants)
main.add_command(keys.keys)
main.add_command(demo.demo)
main.add_command(scopes.scope)
main.add_command(upstreams.upstream)
main.add_command(consents.consent)
main.add_command(audit.audit)
main.add_command(audit.events)
main.add_command(report.report)

__all__ = ["main"]
