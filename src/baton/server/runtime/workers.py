"""`baton serve --workers N`: N server processes, each listening on a socket of its own, under a
supervisor that only supervises.

uvicorn's own `--workers` has every process accept from one shared listening socket. A burst of
new connections wakes them all, and whichever process wakes first accepts the whole burst: a
client that opens its sixteen keep-alive connections at once (a connection pool, a load
balancer, a benchmark) had fifteen of them served by one process while the other idled. Here
each process binds the address itself with `SO_REUSEPORT`, and the kernel spreads connections
over the processes' sockets by a hash of each connection's addresses and ports.

The supervisor checks first that nothing else listens on the address (the kernel would
otherwise share it with any process of the same user that also asked for `SO_REUSEPORT`),
starts the workers, restarts one that dies (and gives up, as uvicorn does, when one fails to start
three times in a row), and on SIGINT or SIGTERM stops them all gracefully.

Memory: `baton serve` checks the database and the options with the whole application imported,
then replaces itself (`exec`, same process id) with this module's `main`, which imports the
standard library and the log formatter only: no app, store, crypto or uvicorn. Each worker is a
plain subprocess, `python -m baton.server.runtime.worker` (`baton.server.runtime.worker`),
which imports what serving needs. The resolved settings, secrets included, reach the workers in
the environment (`BATON_SERVE_CONFIG`, readable by the same user only, as /proc/PID/environ
is), never on a command line; the uvicorn options, which hold no secret, in
`BATON_WORKER_SPEC`. A worker tells it listens by writing one byte to a pipe it inherits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from baton.server.observability import MULTIPROC_VARIABLE  # a constant: imports no metrics

log = logging.getLogger("uvicorn.error")

STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its requests after SIGTERM
START_ATTEMPTS = 3  # failed starts in a row of one worker before the supervisor gives up
RESTART_DELAY = 0.5  # seconds before a worker that failed to start is started again
STARTUP_FAILURE = 3  # uvicorn.config.STARTUP_FAILURE, the exit code of a server that never listened

SUPERVISOR_VARIABLE = "BATON_SUPERVISOR_SPEC"  # what `main` supervises (JSON, no secret)
WORKER_VARIABLE = "BATON_WORKER_SPEC"  # what a worker serves (JSON, no secret)
READY_FD_VARIABLE = "BATON_WORKER_READY_FD"  # the pipe a worker writes one byte to once it listens
WORKER_MODULE = "baton.server.runtime.worker"


# Pretty-printers that structlog (rich tracebacks, colours), httpx (its command line: pygments,
# rich) and mako (alembic's templates: pygments) import when they are installed, though a server
# process never uses them: `baton.logs` renders every record with exceptions already formatted.
# The supervisor and the workers refuse them (`import rich` raises ImportError, which those
# libraries expect), and are lighter by a few MB each.
UNUSED_OPTIONAL_MODULES = ("rich", "better_exceptions", "colorama", "pygments")


def refuse_unused_modules() -> None:
    """Makes `UNUSED_OPTIONAL_MODULES` unimportable in this process (unless already imported)."""
    for name in UNUSED_OPTIONAL_MODULES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # the import system's "absent"


def listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn binds one; `shared` adds SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def claim_port(host: str, port: int) -> int:
    """Fails (OSError, "address already in use") when anything listens on the address, with or
    without SO_REUSEPORT; returns the port, the one the kernel chose when `port` is 0."""
    with listening_socket(host, port, shared=False) as probe:
        probe.listen(1)
        return int(probe.getsockname()[1])


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process started with `python -m baton...`: this one's, plus `extra`,
    plus the folder that holds the `baton` package on PYTHONPATH when it is not a site folder
    (a checkout run with a path of its own), so the child imports the same Baton."""
    import site

    env = dict(os.environ, **extra)
    root = str(Path(__file__).resolve().parents[3])
    sites = {str(Path(p).resolve()) for p in (*site.getsitepackages(), site.getusersitepackages())}
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in sites and root not in {str(Path(p).resolve()) for p in paths}:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], ready_fd: int) -> None:
        self.process = process
        self.ready_fd = ready_fd  # the read end of the worker's ready pipe (-1 once closed)
        self.ready = False

    def poll_ready(self) -> bool:
        """Whether the worker has written its byte (read without blocking)."""
        if not self.ready and self.ready_fd >= 0:
            with contextlib.suppress(BlockingIOError):
                if os.read(self.ready_fd, 1):
                    self.ready = True
        return self.ready

    def close(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1


class Supervisor:
    # Plain classes: `dataclasses` (with `inspect` and `ast`) would be the supervisor's largest
    # import after logging.
    def __init__(self, config: dict[str, Any], host: str, port: int, count: int) -> None:
        self.config = config  # uvicorn.Config's arguments but host and port, as JSON
        self.host = host
        self.port = port
        self.count = count
        self.workers: list[_Worker] = []
        self.stopping = False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            log.info("Started parent process [%d]", os.getpid())
            self.workers = [self._start() for _ in range(self.count)]
            failures = [0] * self.count  # failed starts in a row, per worker
            while not self.stopping:
                self._wait(0.5)
                for index, worker in enumerate(self.workers):
                    if self.stopping or worker.process.poll() is None:
                        continue
                    exitcode = worker.process.returncode
                    if worker.poll_ready():
                        failures[index] = 0
                        log.warning(
                            "worker [%d] died (exit code %s); starting another",
                            worker.process.pid,
                            exitcode,
                        )
                    else:
                        # It never listened: a race with the other workers' start (two first
                        # writes on a fresh database) passes on a second try; an app that cannot
                        # start (a bad database URL) fails every time, so give up as uvicorn does.
                        failures[index] += 1
                        log.error(
                            "worker [%d] could not start (exit code %s)%s",
                            worker.process.pid,
                            exitcode,
                            "; stopping" if failures[index] >= START_ATTEMPTS else "; trying again",
                        )
                        if failures[index] >= START_ATTEMPTS:
                            self._stop_all()
                            return STARTUP_FAILURE
                        time.sleep(RESTART_DELAY)
                    worker.close()
                    self.workers[index] = self._start()
            self._stop_all()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait(self, timeout: float) -> None:
        """Until a worker says it listens, or `timeout` seconds (a worker's death is seen by
        polling at that pace; SIGINT and SIGTERM end the wait early)."""
        pending = [w.ready_fd for w in self.workers if not w.ready and w.ready_fd >= 0]
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(pending, [], [], timeout)
            for worker in self.workers:
                if worker.ready_fd in readable:
                    worker.poll_ready()

    def _start(self) -> _Worker:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        spec = {"config": self.config, "host": self.host, "port": self.port}
        env = child_environment(
            {WORKER_VARIABLE: json.dumps(spec), READY_FD_VARIABLE: str(write_end)}
        )
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
                [sys.executable, "-m", WORKER_MODULE], env=env, pass_fds=(write_end,)
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the worker holds it: end of file here when it exits
        return _Worker(process, read_end)

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker [%d] did not stop in time; killing it", worker.process.pid)
                worker.process.kill()
                worker.process.wait()
            worker.close()
        log.info("Stopping parent process [%d]", os.getpid())


@contextlib.contextmanager
def metrics_directory() -> Iterator[None]:
    """prometheus_client's multiprocess mode: a fresh directory for this run's metric files,
    shared by the workers (who inherit the variable) and removed at exit."""
    directory = tempfile.mkdtemp(prefix="baton-metrics-")
    os.environ[MULTIPROC_VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def configure_logging(config: dict[str, Any]) -> None:
    """The supervisor's own records in the workers' format (`log_config`), at `log_level`."""
    if config.get("log_config"):
        logging.config.dictConfig(config["log_config"])
    else:
        logging.basicConfig(format="%(levelname)s:     %(message)s")
    level = config.get("log_level")
    if level is not None:
        logging.getLogger("uvicorn.error").setLevel(str(level).upper())


def serve(config: dict[str, Any], host: str, port: int, workers: int) -> int:
    """Runs `workers` server processes on (host, port) until SIGINT or SIGTERM; the exit code."""
    configure_logging(config)
    try:
        port = claim_port(host, port)
    except OSError as exc:
        log.error("%s", exc)
        return STARTUP_FAILURE
    with metrics_directory():
        return Supervisor(config, host, port, workers).run()


def hand_over(config: dict[str, Any], host: str, port: int, workers: int) -> NoReturn:
    """Replaces this process (`baton serve`, with the whole app imported to check the database)
    by the supervisor alone: same process id, same standard streams, the memory of the app
    given back. `config` must be JSON (uvicorn's `http` as a "module:name" string)."""
    spec = {"config": config, "host": host, "port": port, "workers": workers}
    env = child_environment({SUPERVISOR_VARIABLE: json.dumps(spec)})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", __name__], env)  # noqa: S606


def main() -> NoReturn:
    """`python -m baton.server.runtime.workers`, as `hand_over` starts it."""
    refuse_unused_modules()
    spec = json.loads(os.environ.pop(SUPERVISOR_VARIABLE))
    sys.exit(serve(spec["config"], spec["host"], spec["port"], spec["workers"]))


if __name__ == "__main__":
    main()
