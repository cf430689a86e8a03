"""What an option declaration is: `Option` (name, type, default, bounds or choices, help, and
what of its value is a credential: all of a secret, a URL's password) and `Lands`, the dataclass
field it fills. An option's default is read from that field, so it is written once; the
declarations themselves are in `baton.config.options`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from baton.config.settings import ServeConfig, Settings
from baton.core.policy import Lifetimes, Policy
from baton.store.engines import PoolSettings, SQLiteSettings
from baton.urls import MASK, carries_credential, masked_url


class Lands(StrEnum):
    """Where a resolved option goes."""

    SETTINGS = "Settings"
    LIFETIMES = "Lifetimes"
    POLICY = "Policy"
    POOL = "PoolSettings"
    SQLITE = "SQLiteSettings"
    CONFIG = "ServeConfig"
    SERVE = "serve"  # the serve command alone: host, port, workers, logs, files


# The dataclass whose field default is an option's default (serve-only options declare theirs).
class Url(StrEnum):
    """What of a URL option's value may be a credential: `config show` masks it, and a config
    file holding one must be private, as for a secret."""

    PASSWORD = "password"  # `user:password@host`, `?password=`
    # A webhook's receiver may take its token in the path (`/services/T/B/TOKEN`) or the query:
    # only `scheme://host:port` is shown.
    ORIGIN = "origin"


_HOMES: dict[Lands, type[Any]] = {
    Lands.SETTINGS: Settings,
    Lands.LIFETIMES: Lifetimes,
    Lands.POLICY: Policy,
    Lands.POOL: PoolSettings,
    Lands.SQLITE: SQLiteSettings,
    Lands.CONFIG: ServeConfig,
}

_DERIVED: Any = object()  # `Option.given`: no default declared here, read it from the dataclass


@dataclass(frozen=True)
class Option:
    """One option of `baton serve`: flag `--kebab-name`, variable `BATON_UPPER_NAME`, file key
    `snake_name`. `kind` is int, float, str, bool or tuple (a list of strings: comma-separated
    on the command line and in the environment, an array in the file)."""

    name: str
    kind: type[Any]
    help: str
    lands: Lands
    field: str = ""  # the field it fills, when not `name`
    given: Any = _DERIVED  # the default, for options whose home declares none
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    scale: int = 1  # the field holds value * scale (days given, seconds kept)
    secret: bool = False  # masked by `config show`; in a file only if the file is private
    url: Url | None = None  # a URL that may carry credentials (see `Url`)
    env_only: bool = False  # never on argv: no flag, only the environment or a private file
    in_file: bool = True
    is_path: bool = False  # a file's path (a directory is refused)
    default_text: str = ""  # the default, in words, where the value is computed or absent
    doc: str = ""  # docs/configuration.md's longer meaning; `help` when empty

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "BATON_" + self.name.upper()

    @property
    def target(self) -> str:
        return self.field or self.name

    @property
    def default(self) -> Any:
        if self.given is not _DERIVED:
            return self.given
        home = _HOMES[self.lands]
        found = next(f for f in dataclasses.fields(home) if f.name == self.target)
        value = found.default
        if isinstance(value, Enum):
            return value.value
        return value // self.scale if self.scale != 1 else value

    def carries_credential(self, value: Any) -> bool:
        """Whether `value` holds a credential: a secret's value, or a URL's password (or
        token); a config file holding one must be private."""
        if self.secret:
            return bool(value)
        if self.url is not None and isinstance(value, str):
            return carries_credential(value, origin_only=self.url is Url.ORIGIN)
        return False

    def shown(self, value: Any) -> Any:
        """`value` as `baton config show` prints it: a secret masked, a URL without its
        credentials."""
        if self.secret and value:
            return MASK
        if self.url is not None and isinstance(value, str):
            return masked_url(value, origin_only=self.url is Url.ORIGIN)
        return value
