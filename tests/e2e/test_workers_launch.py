"""`baton serve --workers 2` as an operator starts it: from a working directory of their own (a
service's data directory, a container's workdir) and with the interpreter's options of their
choice. Neither the supervisor nor a worker imports code from that directory, and both run
with those options."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import START_TIMEOUT, Seed, Server, free_port
from tests.e2e.test_workers import METADATA, children, listening_workers, wait_for

pytestmark = pytest.mark.e2e

# What the console script (`baton`, `baton.script:main`) runs: `sys.path[0]` is the script's
# folder, not the working directory, as with /opt/baton/bin/baton.
LAUNCHER = "import sys\nfrom baton.script import main\nsys.exit(main())\n"
OPTIONS = ["-O", "-X", "faulthandler"]
# Modules the supervisor (json) and each worker (uvicorn) import after start-up.
SHADOWED = ("json", "uvicorn")


@pytest.fixture(scope="module")
def launched(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert isinstance(seed.db, Path)
    directory = tmp_path_factory.mktemp("launched")
    workdir = directory / "workdir"
    workdir.mkdir()
    for name in SHADOWED:
        (workdir / f"{name}.py").write_text(f"raise SystemExit('{name}.py of the workdir ran')\n")
    db = directory / "baton.db"
    for suffix in ("", "-wal", "-shm"):
        source = seed.db.with_name(seed.db.name + suffix)
        if source.exists():
            db.with_name(db.name + suffix).write_bytes(source.read_bytes())
    launcher = directory / "bin" / "baton"
    launcher.parent.mkdir()
    launcher.write_text(LAUNCHER)
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db), "--workers", "2"]
    log_path = directory / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *OPTIONS, str(launcher), *args],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(
        f"http://127.0.0.1:{port}", db, seed.client, seed.resource_server, process, log_path
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(listening_workers(server)) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, server.stderr()
            time.sleep(0.05)
        assert len(listening_workers(server)) == 2, server.stderr()
        yield server
    finally:
        server.stop()


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_a_module_in_the_working_directory_is_not_imported(launched: Server) -> None:
    for _ in range(8):  # a connection each: the kernel spreads them over both workers
        with httpx.Client() as client:
            assert client.get(launched.url + METADATA).status_code == 200
    assert "of the workdir ran" not in launched.stderr()
    assert launched.process.poll() is None


def test_every_process_runs_with_the_interpreters_options(launched: Server) -> None:
    supervisor = launched.process.pid
    wait_for(lambda: len(children(supervisor)) == 2)
    for pid in [supervisor, *children(supervisor)]:
        argv = _argv(pid)
        options = argv[1 : argv.index("-m")]
        assert "-O" in options and "-P" in options, argv
        assert options[options.index("faulthandler") - 1] == "-X", argv


def test_the_supervisors_command_line_shows_the_address_and_no_setting(launched: Server) -> None:
    argv = _argv(launched.process.pid)
    port = urlsplit(launched.url).port
    assert argv[argv.index("-m") + 1 :] == [
        "baton.server.runtime.workers",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
    ]
