"""The base install, for real: a wheel of this tree in a fresh virtualenv with nothing but its
declared base dependencies (resolved by pip from the configured index). The client SDK and the
resource middleware import and verify an opaque token against a stubbed introspection endpoint;
no server dependency is installed; the `baton` script says which extra it needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# Run inside the fresh virtualenv: exit 3 names a missing module, 0 prints the principal.
CHECK = textwrap.dedent(
    """
    import sys
    import time
    from urllib.parse import parse_qs

    import httpx

    import baton.client

    try:
        from baton.resource import Verifier
    except ModuleNotFoundError as exc:
        print(exc.name)
        sys.exit(3)


    def introspect(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/introspect", request.url
        assert parse_qs(request.content.decode())["token"] == ["bat_at_light"]
        return httpx.Response(200, json={
            "active": True, "client_id": "app", "sub": "alice", "scope": "read write",
            "exp": int(time.time()) + 60, "aud": "https://api.example",
        })


    verifier = Verifier(
        "https://issuer.example", "api", "secret", audience="https://api.example",
        feed=False, transport=httpx.MockTransport(introspect),
        algorithms=(),  # opaque tokens only: JWTs need the `jose` extra
    )
    who = verifier.verify("bat_at_light", "read")
    print(who.subject, who.client_id, who.token_format, baton.client.Refresher.__name__)
    """
)


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH (the test run's may name this tree's src/): the virtualenv sees only
    # what it installed. pip keeps its configuration (index, mirrors).
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env=clean,
    )


def distribution_names(specs: list[str]) -> set[str]:
    return {normalized(re.split(r"[\[<>=!~; ]", spec)[0]) for spec in specs}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding a wheel of this tree and its base dependencies only."""
    work = tmp_path_factory.mktemp("light")
    # Built from a copy: an in-tree build would leave an egg-info in src/, on everyone's path.
    tree = work / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", work, tree)
    assert built.returncode == 0, built.stderr
    (wheel,) = work.glob("baton_oauth-*.whl")
    made = run(sys.executable, "-m", "venv", work / "venv")
    assert made.returncode == 0, made.stderr
    installed = run(work / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr
    return work / "venv"


def test_no_server_dependency_is_installed(venv: Path) -> None:
    listed = run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze")
    assert listed.returncode == 0, listed.stderr
    present = {normalized(line.partition("==")[0]) for line in listed.stdout.splitlines()}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert "baton-oauth" in present
    optional = distribution_names(
        extras["server"] + extras["redis"] + extras["jose"] + extras["otel"]
    )
    assert present & optional == set()


def test_the_sdk_and_the_middleware_verify_an_opaque_token(venv: Path) -> None:
    checked = run(venv / "bin" / "python", "-c", CHECK, cwd=venv)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "alice app opaque Refresher\n"


def test_the_console_script_names_the_server_extra(venv: Path) -> None:
    result = run(venv / "bin" / "baton", "serve")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'baton-oauth[server]'" in result.stderr
