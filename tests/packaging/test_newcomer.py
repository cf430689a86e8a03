"""The newcomer's path, for real: a clean clone of this repository (its committed HEAD), the
README's quick start run as written, and the docs site built from that clone with no broken link.

The quick start's first block (`make serve`) runs in the background, as the README's first
terminal; its second block runs in bash, as the second terminal, once the server answers. The
one liberty taken: a free port instead of 8000 (`ARGS="--port N"`, and the URLs to match), so
that the test never meets another server. `make serve` creates the clone's own `.venv` and
installs the `server` extra from the package index, which takes minutes: the test is opt-in
(BATON_NEWCOMER=1) and `slow`."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
# Installs included: a fresh virtualenv and the server extra's wheels take minutes.
READY_TIMEOUT = 900.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("BATON_NEWCOMER") != "1",
        reason="clones the repository and installs it into a fresh virtualenv (minutes): "
        "set BATON_NEWCOMER=1 to run it",
    ),
]


def quick_start(readme: str) -> tuple[str, str]:
    """The README's quick start: the server's block and the second terminal's."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    serve, commands = re.findall(r"```sh\n(.*?)```", section, re.S)
    return serve.strip(), commands


def clean_environment(home: Path) -> dict[str, str]:
    """A newcomer's shell: no virtualenv active, nothing of this test run's, no BATON_ option,
    and a terminal wide enough for the demo's tables."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
        and not name.startswith(("BATON_", "PYTEST_"))
    }
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env["HOME"] = str(home)
    env["COLUMNS"] = "160"
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("newcomer")
    target = work / "baton"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    return target


@pytest.fixture(scope="module")
def serving(clone: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], dict[str, str]]]:
    """The README's first terminal: `make serve` on a free port, until the server is ready."""
    serve, _ = quick_start((clone / "README.md").read_text())
    assert serve == "make serve"
    port = free_port()
    env = clean_environment(clone.parent)
    log = (clone.parent / "serve.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        ["make", "serve", f"ARGS=--port {port}"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make and the server it starts: one group to stop
    )
    try:
        while not ready(port):
            if process.poll() is not None:
                pytest.fail(f"make serve exited {process.returncode}:\n{serve_log(clone)}")
            if time.monotonic() - started > READY_TIMEOUT:
                pytest.fail(
                    f"make serve was not ready in {READY_TIMEOUT:.0f} s:\n{serve_log(clone)}"
                )
            time.sleep(1)
        print(f"\nmake serve on a clean clone: ready in {time.monotonic() - started:.0f} s")
        yield port, process, env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def serve_log(clone: Path) -> str:
    return (clone.parent / "serve.log").read_text(errors="replace")[-4000:]


def test_the_quick_start_runs_as_written(
    clone: Path, serving: tuple[int, subprocess.Popen[bytes], dict[str, str]]
) -> None:
    port, _, env = serving
    _, commands = quick_start((clone / "README.md").read_text())
    script = "set -euo pipefail\n" + commands.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # What the README promises.
    out = done.stdout
    assert '{"status":"ready"' in out, out
    token = re.search(r'\{"access_token":"bat_at_\w+","token_type":"Bearer".*?\}', out)
    assert token is not None, out
    assert '"expires_in":3600,"scope":"read"' in token.group(0)
    assert "grant revoked: reuse detected" in out, out
    # quickstart.json holds the client's secret: its owner's alone.
    assert stat.S_IMODE((clone / "quickstart.json").stat().st_mode) == 0o600
    # `make serve` installed what serving needs and not the development tools.
    python = clone / ".venv" / "bin" / "python"
    for module, present in (("uvicorn", True), ("baton.cli", True), ("pytest", False)):
        found = subprocess.run(
            [python, "-c", f"import {module}"], env=env, capture_output=True, check=False
        )
        assert (found.returncode == 0) == present, module
    # Everything the quick start wrote (.venv, the database, its key, quickstart.json) is
    # ignored: the clone is as clean as it was.
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored=no"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == "", status.stdout


def test_the_docs_site_builds_with_no_broken_link(clone: Path, tmp_path: Path) -> None:
    env = {**clean_environment(tmp_path), "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "walkthrough" / "index.html").is_file()
