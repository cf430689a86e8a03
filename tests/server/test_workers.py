"""The supervisor of `baton serve --workers N` (baton.server.runtime.workers), without a database:
the address check, giving up on workers that cannot start, the workers' command line, and what
becomes of the workers when the supervisor fails or is killed (workers serving a tiny ASGI app).
tests/e2e/test_workers.py runs it with the app."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.server.runtime.workers import (
    SUPERVISOR_VARIABLE,
    Supervisor,
    child_environment,
    claim_port,
    listening_socket,
    python_command,
    supervisor_command,
)

CANNOT_START = {"app": "baton.no_such_module:create", "factory": True, "log_level": "critical"}


def test_claiming_port_zero_gives_the_port_the_kernel_chose() -> None:
    port = claim_port("127.0.0.1", 0)
    assert port > 0
    with listening_socket("127.0.0.1", port, shared=True) as sock:  # and it is free again
        sock.listen(1)


@pytest.mark.parametrize("shared", [False, True])
def test_an_address_with_a_listener_is_refused(shared: bool) -> None:
    with listening_socket("127.0.0.1", 0, shared=shared) as other:
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(OSError) as refused:
            claim_port("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE


def test_a_worker_that_cannot_start_stops_the_supervisor_with_uvicorns_code() -> None:
    port = claim_port("127.0.0.1", 0)
    started = time.monotonic()
    assert Supervisor(CANNOT_START, "127.0.0.1", port, 2).run() == 3
    assert time.monotonic() - started < 30
    with socket.create_server(("127.0.0.1", port)):  # nothing was left listening
        pass


def test_the_supervisor_fails_no_less_well_with_descriptors_above_1023() -> None:
    """A supervisor started with many open files (inherited from whatever started it) gets
    pipe descriptors above 1023, which `select.select` refuses with a ValueError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"at most {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        port = claim_port("127.0.0.1", 0)
        assert Supervisor(CANNOT_START, "127.0.0.1", port, 2).run() == 3
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the workers' command line ---------------------------------------------------------------------


def test_the_private_helper_for_the_interpreters_options_is_still_there() -> None:
    """`python_command` passes on this interpreter's options with
    `subprocess._args_from_interpreter_flags` (private, what multiprocessing uses); without
    it the children would silently run without them."""
    flags = subprocess._args_from_interpreter_flags  # type: ignore[attr-defined]
    assert callable(flags)
    found = flags()
    assert isinstance(found, list) and all(isinstance(flag, str) for flag in found)


def test_children_run_with_the_interpreters_options_and_without_the_working_directory() -> None:
    script = (
        "import json\nfrom baton.server.runtime.workers import python_command\n"
        "print(json.dumps(python_command('baton.server.runtime.worker')))"
    )
    options = ["-O", "-X", "faulthandler", "-W", "ignore::ResourceWarning"]
    done = subprocess.run(
        [sys.executable, *options, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    command = json.loads(done.stdout)
    assert command[0] == sys.executable
    assert command[-2:] == ["-m", "baton.server.runtime.worker"]
    flags = command[1:-2]
    assert "-O" in flags and "-Wignore::ResourceWarning" in flags and "-P" in flags
    assert flags[flags.index("faulthandler") - 1] == "-X"


def test_without_the_private_helper_children_still_run_without_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(subprocess, "_args_from_interpreter_flags")
    assert python_command("m") == [sys.executable, "-P", "-m", "m"]


def test_the_supervisors_command_line_names_the_address_and_nothing_else() -> None:
    """`ps` and `systemctl status` show the address and the number of workers; every setting,
    secrets included, stays in the environment (`hand_over`)."""
    command = supervisor_command("127.0.0.1", 8000, 4)
    assert command[-4:] == ["--bind", "127.0.0.1:8000", "--workers", "4"]
    assert command[-7:-4] == ["-P", "-m", "baton.server.runtime.workers"]
    assert supervisor_command("::1", 8000, 2)[-3] == "[::1]:8000"


# -- workers serving a tiny ASGI app -------------------------------------------------------------

TINY_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"tiny"})
"""
TINY: dict[str, object] = {"app": "tiny_app:app", "log_level": "warning", "lifespan": "on"}


@pytest.fixture
def tiny_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tiny_app:app` importable by the workers (on PYTHONPATH, which they inherit)."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "tiny_app.py").write_text(TINY_APP)
    paths = [str(folder), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return folder


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


class _FailsOnceListening(Supervisor):
    """A supervisor whose loop raises (a bug) once both workers listen."""

    started: list[subprocess.Popen[bytes]]

    def _wait(self, timeout: float) -> None:
        super()._wait(timeout)
        self.started = [worker.process for worker in self.workers]
        if len(self.workers) == self.count and all(w.ready for w in self.workers):
            raise RuntimeError("a bug in the supervisor's loop")


@pytest.mark.usefixtures("tiny_app")
def test_an_exception_in_the_supervisors_loop_stops_the_workers() -> None:
    port = claim_port("127.0.0.1", 0)
    supervisor = _FailsOnceListening(TINY, "127.0.0.1", port, 2)
    supervisor.started = []
    try:
        with pytest.raises(RuntimeError, match="a bug"):
            supervisor.run()
        assert len(supervisor.started) == 2
        for worker in supervisor.started:  # stopped by SIGTERM (uvicorn re-raises it), not killed
            assert worker.poll() in (0, -signal.SIGTERM)
        with socket.create_server(("127.0.0.1", port)):  # nothing was left listening
            pass
    finally:
        _kill([p.pid for p in supervisor.started])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in tasks.read_text().split()]
        except OSError:
            continue
    return found


def _supervised(config: dict[str, object]) -> tuple[int, dict[str, str]]:
    """A free port, and the environment `hand_over` gives the supervisor of two workers of the
    app that `config` configures, on it."""
    port = claim_port("127.0.0.1", 0)
    spec = {"config": config, "host": "127.0.0.1", "port": port, "workers": 2}
    return port, child_environment({SUPERVISOR_VARIABLE: json.dumps(spec)})


@pytest.fixture
def supervisor_process(tiny_app: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -P -m baton.server.runtime.workers` with two workers of the tiny app, as
    `hand_over` starts it; its port."""
    port, env = _supervised(TINY)
    process = subprocess.Popen(
        supervisor_command("127.0.0.1", port, 2), env=env, stderr=subprocess.PIPE
    )
    seen: list[int] = []
    try:
        yield process, port
    finally:
        seen = _children(process.pid)
        process.kill()
        process.wait()
        _kill(seen)
        assert process.stderr is not None
        process.stderr.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(1024).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_the_workers_stop_when_the_supervisor_is_killed(
    supervisor_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    """SIGKILL (or any death) of the supervisor: the workers stop rather than serve on with
    nobody to restart or stop them, holding the port."""
    process, port = supervisor_process
    assert _wait_until(lambda: len(_children(process.pid)) == 2 and _answers(port))
    workers = _children(process.pid)
    process.kill()
    process.wait()
    try:
        assert _wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=20)
        assert not _answers(port)
    finally:
        _kill(workers)


def test_ctrl_c_stops_every_process_quietly(tiny_app: Path) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole process group, workers included: they
    stop as on SIGTERM, without a KeyboardInterrupt traceback each."""
    port, env = _supervised(TINY)
    process = subprocess.Popen(
        supervisor_command("127.0.0.1", port, 2),
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, as a terminal's job
    )
    workers: list[int] = []
    try:
        assert _wait_until(lambda: len(_children(process.pid)) == 2 and _answers(port))
        workers = _children(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 0
        assert b"Traceback" not in errors and b"KeyboardInterrupt" not in errors, errors.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        _kill(workers)


def test_a_module_in_the_working_directory_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m` would put the working directory (a service's data directory) first on
    `sys.path`: a `json.py` there would run in the supervisor, a `uvicorn.py` in each worker."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    for name in ("json", "uvicorn"):
        marker = workdir / f"{name}-imported"
        (workdir / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nraise SystemExit(9)\n"
        )
    monkeypatch.chdir(workdir)
    port, env = _supervised(CANNOT_START)
    done = subprocess.run(
        supervisor_command("127.0.0.1", port, 2),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["json.py", "uvicorn.py"]
    assert done.returncode == 3, done.stderr  # the workers ran (and could not start the app)
