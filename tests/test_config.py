"""The options of `baton serve`, declared once in `baton.config`: their defaults agree with the
dataclasses they fill, each layer (flag > environment > config file > default) wins over the
next, a config file Baton refuses stops it with one line naming the file and the key (exit 2),
secrets are masked and stay off argv, and a value means the same in a file as in a variable."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.cli import main
from baton.config import BY_NAME, OPTIONS, Lands, ServeConfig, Settings, build
from baton.store.engines import normalize_url
from tests.support import serve_until_ready

SECRET = "a secret of more than thirty-two characters"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, for the characters used here
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)


def write_config(directory: Path, values: Mapping[str, Any], mode: int = 0o600) -> Path:
    path = directory / "baton.toml"
    path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()))
    path.chmod(mode)
    return path


def show(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """`baton config show --json ARGS` with no BATON_ variable but those of `env`."""
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("BATON_")}
    return CliRunner().invoke(
        main, ["config", "show", "--json", *args], env=clean | dict(env or {})
    )


def shown(*args: str, env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = show(*args, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    rows: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return rows


def refused(result: Result, *fragments: str) -> None:
    """Exit status 2, nothing on stdout, one `error:` line naming each fragment, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# -- the declarations ------------------------------------------------------------------------------


def test_the_defaults_are_the_dataclasses_defaults() -> None:
    config, serve = build({option.name: option.default for option in OPTIONS})
    assert config == ServeConfig(Settings())
    assert (serve.host, serve.port, serve.workers) == ("127.0.0.1", 8000, 1)


def test_each_option_has_its_flag_or_is_kept_off_argv() -> None:
    params = {p.name: p for p in main.commands["serve"].params}
    for option in OPTIONS:
        if option.env_only:
            assert option.name not in params and option.secret
        else:
            assert params[option.name].opts == [option.flag]
            assert getattr(params[option.name], "envvar", None) == option.env
    assert {o.target for o in OPTIONS if o.lands is Lands.SETTINGS} <= set(
        Settings.__dataclass_fields__
    )


def test_serve_help_shows_each_variable_and_default() -> None:
    text = " ".join(CliRunner().invoke(main, ["serve", "--help"]).stdout.split())
    for option in OPTIONS:
        if not option.env_only:
            assert f"env var: {option.env}" in text, option
    for default in ("default: 600", "default: replay", "default: sqlite:///baton.db"):
        assert default in text


def test_secrets_never_on_argv() -> None:
    for flag in ("--session-key", "--webhook-secret"):
        result = CliRunner().invoke(main, ["serve", flag, SECRET])
        assert result.exit_code == 2 and "No such option" in result.stderr


# -- precedence --------------------------------------------------------------------------------


def test_each_layer_wins_over_the_next(tmp_path: Path) -> None:
    path = str(write_config(tmp_path, {"leeway": 10, "metrics_public": True}))
    assert shown()["leeway"] == {"value": 600, "source": "default"}
    assert shown("--config", path)["leeway"] == {"value": 10, "source": "file"}
    env = {"BATON_LEEWAY": "20", "BATON_METRICS_PUBLIC": "0"}
    rows = shown("--config", path, env=env)
    assert rows["leeway"] == {"value": 20, "source": "env"}
    assert rows["metrics_public"] == {"value": False, "source": "env"}
    rows = shown("--config", path, "--leeway", "30", "--metrics-public", env=env)
    assert rows["leeway"] == {"value": 30, "source": "flag"}
    assert rows["metrics_public"] == {"value": True, "source": "flag"}
    # The file itself may come from the environment.
    assert shown(env={"BATON_CONFIG": path})["leeway"] == {"value": 10, "source": "file"}


def test_env_only_secrets_come_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    path = str(write_config(tmp_path, {"webhook_secret": SECRET, "session_key": SECRET}))
    rows = shown("--config", path)
    assert rows["webhook_secret"] == {"value": "********", "source": "file"}
    rows = shown("--config", path, env={"BATON_WEBHOOK_SECRET": "x" * 20})
    assert rows["webhook_secret"] == {"value": "********", "source": "env"}


def test_show_masks_every_secret_and_says_where_each_value_came_from(tmp_path: Path) -> None:
    env = {"BATON_KEY_ENCRYPTION_KEY": SECRET, "BATON_SESSION_KEY": SECRET}
    result = CliRunner().invoke(
        main, ["config", "show", "--metrics-token", SECRET, "--port", "9000"], env=env
    )
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stdout
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert set(lines) == {option.name for option in OPTIONS}
    assert lines["metrics_token"] == ["flag", "********"]
    assert lines["key_encryption_key"] == ["env", "********"]
    assert lines["webhook_secret"] == ["default", "(unset)"]
    assert lines["issuer"] == ["default", "http://127.0.0.1:9000"]


def test_serve_runs_with_the_file_under_the_environment(tmp_path: Path) -> None:
    """The file's leeway, the environment's retry policy (over the file's), as `serve` reports
    them before it listens; a webhook secret from the private file satisfies serve."""
    db = str(tmp_path / "baton.db")
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", db]).exit_code == 0
    path = write_config(
        tmp_path,
        {
            "db": db,
            "port": 0,
            "leeway": 7,
            "retry_policy": "strict",
            "webhook_url": "http://127.0.0.1:9/hook",
            "webhook_secret": SECRET,
            "session_key": SECRET,
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["BATON_RETRY_POLICY"] = "fork"
    text = serve_until_ready(["--config", str(path)], env)
    assert "(retry policy fork, leeway 7s)" in text, text
    assert not (tmp_path / "baton.db-session.key").exists()  # the file's session key served


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("leeway = -1\n", "leeway: -1 is below the minimum 0"),
        ("leeway = '600'\n", "leeway: expected an integer, not a string"),
        ("leeway = 1.5\n", "leeway: expected an integer, not a number"),
        ("workers = true\n", "workers: expected an integer, not a boolean"),
        ("metrics_public = 1\n", "metrics_public: expected a boolean, not an integer"),
        ("rate_limit_login = -0.5\n", "rate_limit_login: -0.5 is below the minimum 0"),
        ("retry_policy = 'maybe'\n", "retry_policy: 'maybe' is not one of replay, fork, strict"),
        ("trusted_proxies = [1]\n", "trusted_proxies: expected an array of strings"),
        ("trusted_proxies = ['10.0.0.0/8', 'proxy']\n", "trusted_proxies: not an IP network"),
        ("access-ttl = 60\n", "access-ttl: keys are snake_case: write 'access_ttl'"),
        ("acces_ttl = 60\n", "acces_ttl: no such option"),
        ("config = 'other.toml'\n", "config: no such option"),
        ("[serve]\nleeway = 1\n", "serve: no such option"),
        ("leeway = \n", "not valid TOML"),
        ("metrics_token = 'a token'\n", "metrics_token: a secret in a file that group or others"),
        ("db = 'postgresql://u:pw@h/db'\n", "db: a secret in a file that group or others"),
        ("db = 'postgresql://u@h/db?password=pw'\n", "db: a secret in a file that group or"),
        ("redis_url = 'redis://:pw@r:6379/0'\n", "redis_url: a secret in a file that group or"),
        ("webhook_url = 'https://h.example/?token=t'\n", "webhook_url: a secret in a file that"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_line(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "baton.toml"
    path.write_text(content)
    path.chmod(0o640)
    refused(show("--config", str(path)), str(path), says)
    refused(
        CliRunner().invoke(main, ["serve", "--config", str(path), "--db", str(tmp_path / "x")]),
        str(path),
        says,
    )


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    refused(show("--config", str(tmp_path / "nowhere.toml")), "nowhere.toml", "cannot read")


def test_a_private_file_may_hold_secrets(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"metrics_token": SECRET, "key_encryption_key": SECRET})
    rows = shown("--config", str(path))
    assert (
        rows["metrics_token"]
        == rows["key_encryption_key"]
        == {
            "value": "********",
            "source": "file",
        }
    )
    path.chmod(0o604)
    refused(show("--config", str(path)), "chmod 600", "BATON_METRICS_TOKEN")


def test_a_shared_file_may_hold_urls_without_passwords(tmp_path: Path) -> None:
    urls = {
        "db": "sqlite:///baton.db",
        "redis_url": "redis://cache:6379/0",
        "webhook_url": "https://hooks.example/baton",
    }
    rows = shown("--config", str(write_config(tmp_path, urls, mode=0o644)))
    assert rows["db"] == {"value": "sqlite:///baton.db", "source": "file"}
    assert rows["redis_url"] == {"value": "redis://cache:6379/0", "source": "file"}
    # A webhook receiver may take its token in the path: only the origin is shown.
    assert rows["webhook_url"] == {"value": "https://hooks.example/********", "source": "file"}


PASSWORD = "S3cretPW"
URLS = {
    "BATON_DB": f"postgresql://app:{PASSWORD}@db.example:5432/baton?sslmode=require",
    "BATON_REDIS_URL": f"redis://:{PASSWORD}@cache.example:6379/0",
    "BATON_WEBHOOK_URL": f"https://hooks.example/services/T0/B0/{PASSWORD}?token={PASSWORD}",
}


def test_show_never_prints_a_url_password() -> None:
    """The database, Redis and webhook URLs are shown without their credentials, as text and
    as JSON, from the environment or from a private file."""
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("BATON_")}
    text = CliRunner().invoke(main, ["config", "show"], env=clean | URLS)
    assert text.exit_code == 0, text.stderr
    assert PASSWORD not in text.stdout + text.stderr
    lines = {line.split()[0]: line.split()[1:] for line in text.stdout.splitlines()}
    assert lines["db"] == ["env", "postgresql://app:********@db.example:5432/baton?sslmode=require"]
    assert lines["redis_url"] == ["env", "redis://:********@cache.example:6379/0"]
    assert lines["webhook_url"] == ["env", "https://hooks.example/********"]
    result = show(env=URLS)
    assert result.exit_code == 0 and PASSWORD not in result.stdout, result.stdout
    rows = json.loads(result.stdout)
    assert rows["db"]["value"] == "postgresql://app:********@db.example:5432/baton?sslmode=require"
    assert rows["redis_url"]["value"] == "redis://:********@cache.example:6379/0"
    assert rows["webhook_url"]["value"] == "https://hooks.example/********"
    query = {"db": f"postgresql://app@db.example/baton?password={PASSWORD}&sslmode=require"}
    rows = shown("--config", str(write_config(Path(tempfile.mkdtemp()), query)))
    assert rows["db"] == {
        "value": "postgresql://app@db.example/baton?password=********&sslmode=require",
        "source": "file",
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("baton.db", "baton.db"),  # a SQLite path, as written
        ("sqlite:///var/baton.db", "sqlite:///var/baton.db"),
        ("postgresql://app:p%40ss@h/db", "postgresql://app:********@h/db"),
        ("postgresql://app:a@b@h/db", "postgresql://app:********@h/db"),  # `@` in the password
        (
            "postgres://app@h/db?sslpassword=x&sslmode=require",
            "postgres://app@h/db?sslpassword=********&sslmode=require",
        ),
        ("rediss://user:pw@cache:6380", "rediss://user:********@cache:6380"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, expected: str) -> None:
    assert BY_NAME["db"].shown(url) == expected
    assert BY_NAME["db"].carries_credential(url) == (expected != url)


def test_serve_prints_its_hints_without_the_database_password(postgres_database: str) -> None:
    """The commands `serve` suggests (migrate; create a first user and client) carry the
    database URL, never its password."""
    from tests.databases import admin_url, empty_tables

    empty_tables(postgres_database)
    with_password = normalize_url(postgres_database).set(password=PASSWORD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env |= {"BATON_PORT": "0", "BATON_SESSION_KEY": SECRET}
    text = serve_until_ready(["--db", with_password.render_as_string(hide_password=False)], env)
    assert "baton user create --db postgresql+asyncpg://postgres:********@" in text, text
    assert "Baton serving" in text and PASSWORD not in text, text
    # The server's own database holds no Baton schema: `serve` names the upgrade to run.
    unmigrated = normalize_url(admin_url()).set(password=PASSWORD)
    db = unmigrated.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["serve", "--db", db], env={"BATON_SESSION_KEY": SECRET})
    assert result.exit_code != 0 and "baton db upgrade --db postgresql" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


# -- a value means the same in a file as in the environment ---------------------------------------

INTS = [o.name for o in OPTIONS if o.kind is int]
FLOATS = [o.name for o in OPTIONS if o.kind is float]
BOOLS = [o.name for o in OPTIONS if o.kind is bool]
ENV_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False}


def file_and_env(name: str, value: Any, env_text: str) -> tuple[Result, Result]:
    with tempfile.TemporaryDirectory() as directory:
        path = write_config(Path(directory), {name: value})
        from_file = show("--config", str(path))
    return from_file, show(env={BY_NAME[name].env: env_text})


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(INTS), st.integers(min_value=-5, max_value=10**12))
def test_integers_and_their_bounds(name: str, value: int) -> None:
    from_file, from_env = file_and_env(name, value, str(value))
    minimum, maximum = BY_NAME[name].minimum, BY_NAME[name].maximum
    if minimum is not None and value < minimum:
        refused(from_file, name, "below the minimum")
        assert from_env.exit_code == 2 and BY_NAME[name].flag in from_env.stderr
    elif maximum is not None and value > maximum:
        refused(from_file, name, "above the maximum")
        assert from_env.exit_code == 2 and BY_NAME[name].flag in from_env.stderr
    else:
        assert json.loads(from_file.stdout)[name] == {"value": value, "source": "file"}
        assert json.loads(from_env.stdout)[name] == {"value": value, "source": "env"}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(FLOATS),
    st.floats(min_value=-10, max_value=1e9, allow_nan=False) | st.integers(-3, 10**6),
)
def test_numbers_and_their_bounds(name: str, value: float) -> None:
    from_file, from_env = file_and_env(name, value, str(value))
    if value < 0:
        refused(from_file, name, "below the minimum")
        assert from_env.exit_code == 2
    else:
        assert json.loads(from_file.stdout)[name]["value"] == float(value)
        assert json.loads(from_env.stdout)[name]["value"] == float(value)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(BOOLS), st.sampled_from(sorted(ENV_BOOLS)))
def test_booleans(name: str, text: str) -> None:
    from_file, from_env = file_and_env(name, ENV_BOOLS[text], text)
    assert json.loads(from_file.stdout)[name]["value"] is ENV_BOOLS[text]
    assert json.loads(from_env.stdout)[name]["value"] is ENV_BOOLS[text]


networks = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda address: f"{address}/{int(str(address).split('.')[0]) % 33}"),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(networks, max_size=4), st.booleans())
def test_trusted_proxies_as_an_array_or_a_comma_list(entries: list[str], bad: bool) -> None:
    if bad:
        entries = [*entries, "proxy"]
    from_file, from_env = file_and_env("trusted_proxies", entries, ",".join(entries))
    if bad:
        refused(from_file, "trusted_proxies", "'proxy'")
        assert from_env.exit_code == 1 and "--trusted-proxies" in from_env.stderr
    else:
        value = json.loads(from_file.stdout)["trusted_proxies"]["value"]
        assert value == json.loads(from_env.stdout)["trusted_proxies"]["value"]
        assert len(value) == len(entries)
