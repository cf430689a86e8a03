"""Server configuration: every option of `baton serve`, declared once, and where it lands.

`OPTIONS` (`options.py`) declares each option (name, type, default, bounds or choices, help,
whether it is a secret or a URL that may carry credentials) and the field it fills
(`declaration.py`): of `Settings`, of the policy's `Lifetimes`, of `PoolSettings` or
`SQLiteSettings`, or of the serve command alone (host, port, workers, logs). Defaults are read
from those dataclasses (`settings.py`), so each is written once. From the declarations derive
the command's flags (`--access-ttl`), the environment variables (`BATON_ACCESS_TTL`), the keys
of a TOML config file (`access_ttl`, snake_case; read by `sources.py`), `baton config show`
(secrets masked, URLs without their passwords: `urls.py`) and the options table of
docs/configuration.md (`table.py`; `python -m baton.config readme` rewrites it). A flag wins over
the environment, which wins over the file, which wins over the default (see `baton.cli.serve`).
The resolved configuration travels to each worker process as JSON (`ServeConfig`).
"""

from __future__ import annotations

from baton.config.declaration import Lands, Option
from baton.config.options import BY_NAME, OPTIONS
from baton.config.settings import ServeConfig, Settings
from baton.config.sources import (
    ConfigFileError,
    ServeOnly,
    Source,
    build,
    check_value,
    read_config_file,
    split_list,
)
from baton.config.table import TABLE_END, TABLE_START, main, options_table, with_table

__all__ = [
    "BY_NAME",
    "OPTIONS",
    "TABLE_END",
    "TABLE_START",
    "ConfigFileError",
    "Lands",
    "Option",
    "ServeConfig",
    "ServeOnly",
    "Settings",
    "Source",
    "build",
    "check_value",
    "main",
    "options_table",
    "read_config_file",
    "split_list",
    "with_table",
]
