"""Where option values come from and where they go: a TOML config file read and checked (its
keys are the options' snake_case names, its secrets and URLs with passwords only in a private
file), lists split, and
the resolved values placed in `ServeConfig` and `ServeOnly` by `build`. Which source wins (flag >
environment > file > default) is decided by `baton.cli.serve`, which knows what click saw.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from baton.config.declaration import Lands, Option
from baton.config.options import BY_NAME, OPTIONS
from baton.config.settings import ServeConfig, Settings
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.store.engines import PoolSettings, SQLiteSettings


class Source(StrEnum):
    """Where a resolved value came from, strongest first."""

    FLAG = "flag"
    ENV = "env"
    FILE = "file"
    DEFAULT = "default"


class ConfigFileError(ValueError):
    """A config file Baton refuses; the message is one line naming the file and the key."""


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "an array of strings",
}


def _toml_type(value: Any) -> str:
    kinds: tuple[tuple[type[Any], str], ...] = (
        (bool, "a boolean"),  # before int: a bool is an int to Python, not to TOML
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def check_value(option: Option, value: Any) -> Any:
    """A value from a file as the option's type, within its bounds; ValueError says why not.
    (Flags and environment variables are parsed by click, with the same bounds.)"""
    kind = option.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is tuple:
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
        value = split_list(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"expected {_TYPE_NAMES[kind]}, not {_toml_type(value)}")
    if option.minimum is not None and value < option.minimum:
        raise ValueError(f"{value!r} is below the minimum {option.minimum:g}")
    if option.maximum is not None and value > option.maximum:
        raise ValueError(f"{value!r} is above the maximum {option.maximum:g}")
    if option.choices and value not in option.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(option.choices)}")
    return value


def split_list(value: str | Sequence[str]) -> tuple[str, ...]:
    """A list option's entries: comma-separated text, or a file's array (whose entries may also
    hold commas), stripped, empty ones dropped."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    return tuple(part.strip() for part in parts if part.strip())


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The options a TOML config file sets, checked; ConfigFileError (one line naming the file
    and the key) for a file that is missing or not TOML, a key that is no option or is written
    in kebab-case, a value of the wrong type or out of bounds, and a credential (a secret, a URL
    with a password) in a file that group or others may read."""
    where = Path(path)
    try:
        with where.open("rb") as handle:
            raw = tomllib.load(handle)
        mode = os.stat(where).st_mode
    except OSError as exc:
        raise ConfigFileError(f"{where}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{where}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        option = BY_NAME.get(key)
        if option is None or not option.in_file:
            snake = key.replace("-", "_")
            if snake != key and snake in BY_NAME and BY_NAME[snake].in_file:
                problem = f"keys are snake_case: write {snake!r}"
            else:
                problem = "no such option (see `baton serve --help`)"
            raise ConfigFileError(f"{where}: {key}: {problem}")
        try:
            values[key] = check_value(option, value)
        except ValueError as exc:
            raise ConfigFileError(f"{where}: {key}: {exc}") from None
        if option.carries_credential(values[key]) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigFileError(
                f"{where}: {key}: a secret in a file that group or others may read: "
                f"`chmod 600 {where}`, or set {option.env} instead"
            )
    return values


@dataclass(frozen=True)
class ServeOnly:
    """What the serve command itself uses: where it listens, how many processes, how it logs."""

    host: str
    port: int
    workers: int
    log_level: str
    log_format: str
    session_key_file: str | None
    config: str | None


def build(values: Mapping[str, Any]) -> tuple[ServeConfig, ServeOnly]:
    """Every option's resolved value (by name; lists as tuples, trusted proxies normalized)
    placed where it lands."""
    homes: dict[Lands, dict[str, Any]] = {lands: {} for lands in Lands}
    for option in OPTIONS:
        value = values[option.name]
        if option.scale != 1:
            value *= option.scale
        homes[option.lands][option.target] = value
    settings = homes[Lands.SETTINGS]
    serve = ServeOnly(**homes[Lands.SERVE])
    listening = f"[{serve.host}]" if ":" in serve.host else serve.host  # an IPv6 literal
    settings["issuer"] = (settings["issuer"] or f"http://{listening}:{serve.port}").rstrip("/")
    settings["metrics_token"] = settings["metrics_token"] or None
    policy = Policy(Lifetimes(**homes[Lands.LIFETIMES]), RetryPolicy(homes[Lands.POLICY]["retry"]))
    config = ServeConfig(
        Settings(policy=policy, **settings),
        pool=PoolSettings(**homes[Lands.POOL]),
        sqlite=SQLiteSettings(**homes[Lands.SQLITE]),
        **homes[Lands.CONFIG],
    )
    return config, serve
