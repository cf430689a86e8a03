"""What a base install promises, checked in this environment: the SDK and the middleware import
nothing of the server (nor `fcntl`, absent on Windows), and the `baton` console script names the
missing extra in one line instead of a traceback."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import baton
from baton.resource.jwks import load_jose
from baton.script import SERVER_MODULES, missing_server_module

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter that imports this tree's `baton`."""
    prelude = f"import sys; sys.path.insert(0, {str(SRC)!r}); "
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sdk_imports_without_fcntl() -> None:
    # Windows has no fcntl: only FileStore's lock needs it, imported when the lock is taken.
    result = run_python(
        "sys.modules['fcntl'] = None; import baton.client; print(baton.client.FileStore.__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "FileStore\n"


# The jose extra's modules: baton.resource's JWT path (tests/packaging/test_light_install.py
# checks that a base install imports without them).
JOSE = {"joserfc", "cryptography"}


def test_the_sdk_and_the_middleware_import_nothing_of_the_server() -> None:
    # Every module of the server extra made unimportable, as in a base install (this
    # environment has them all, and httpx imports click and rich for its CLI when they exist).
    absent = sorted(SERVER_MODULES - JOSE)
    result = run_python(
        f"sys.modules.update(dict.fromkeys({absent!r})); import baton.client, baton.resource; "
        "print(*sorted(m for m in sys.modules if m.startswith('baton.')))"
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "baton.client" in loaded and "baton.resource" in loaded
    server = {"cli", "config", "demo", "logs", "passwords", "script", "server", "store", "webhooks"}
    assert [m for m in loaded if m.split(".")[1] in server] == []


def test_the_console_script_names_the_server_extra_when_it_is_missing() -> None:
    result = run_python(
        "sys.modules['sqlalchemy'] = None; sys.argv[0] = 'baton'; "
        "from baton.script import main; main()",
        "serve",
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install 'baton-oauth[server]'" in result.stderr
    assert "sqlalchemy is missing" in result.stderr


def test_the_console_script_runs_the_cli() -> None:
    result = run_python("sys.argv[0] = 'baton'; from baton.script import main; main()", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"baton, version {baton.__version__}\n"


@pytest.mark.parametrize(
    "name",
    [
        "sqlalchemy",  # installed here: a failure inside it is a real error, with its traceback
        "sqlalchemy.not_a_module",
        "requests",  # not a server dependency: the server extra would not bring it
        None,
    ],
)
def test_an_installed_or_foreign_module_keeps_its_traceback(name: str | None) -> None:
    assert missing_server_module(ModuleNotFoundError("x", name=name)) is None


def test_an_absent_server_module_gets_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "structlog", None)
    assert "structlog" in SERVER_MODULES
    assert missing_server_module(ModuleNotFoundError("x", name="structlog")) == "structlog"


def test_the_hint_knows_every_module_of_the_server_extra() -> None:
    def normalized(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    server = {normalized(re.split(r"[\[<>=!~; ]", spec)[0]) for spec in extras["server"]}
    installed = {
        module
        for module, distributions in packages_distributions().items()
        if any(normalized(d) in server for d in distributions)
    }
    assert installed == SERVER_MODULES


def test_the_distribution_name_is_declared_once_in_a_light_module() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert baton.DISTRIBUTION == pyproject["project"]["name"] == "baton-oauth"
    # `import baton` (every `baton.*` import runs it) loads nothing beyond the standard library.
    result = run_python(
        "before = set(sys.modules); import baton; "
        "print(*sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["baton"]


def test_the_jose_hint_names_baton_oauth_beside_another_baton(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without joserfc, the hint names `baton-oauth`, even where an unrelated `baton`
    distribution is installed too and claims the `baton` import name."""
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {"baton": ["baton"]})
    monkeypatch.setitem(sys.modules, "joserfc", None)  # as if the `jose` extra were absent
    for name in ("baton.resource.jose", "baton.core.jwa"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError) as raised:
        load_jose()
    assert raised.value.name == "joserfc"
    assert str(raised.value) == (
        'JWT access tokens need joserfc, the `jose` extra: pip install "baton-oauth[jose]"; '
        "to accept opaque tokens only, build the Verifier with algorithms=()"
    )
