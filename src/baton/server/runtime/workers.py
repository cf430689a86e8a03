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
plain subprocess, `python -P -m baton.server.runtime.worker` (`baton.server.runtime.worker`),
which imports what serving needs. Both run with this interpreter's options (-O, -X dev, -W...)
and with -P: the working directory (a service's data directory) is not on `sys.path`, so a
`json.py` that sits there is not imported as code. The resolved settings, secrets included,
reach the workers in the environment (`BATON_SERVE_CONFIG`, readable by the same user only, as
/proc/PID/environ is), never on a command line; the uvicorn options, which hold no secret, in
`BATON_WORKER_SPEC`. A worker tells it listens by writing one byte to a pipe it inherits, and
stops when the supervisor is gone (killed, SIGKILL included): it holds the read end of a pipe
whose only write end is the supervisor's, and end of file there means no supervisor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import selectors
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
LIFE_FD_VARIABLE = "BATON_WORKER_LIFE_FD"  # a pipe that ends (EOF) when the supervisor is gone
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


def interpreter_flags() -> list[str]:
    """The options this interpreter runs with (-O, -X dev, -X faulthandler, -W..., -I, -E, -s),
    as a command line gives them, so a child runs as its parent (multiprocessing passes them the
    same way). `subprocess._args_from_interpreter_flags` is private, held by a test; without it,
    none."""
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)
    found = flags() if callable(flags) else []
    return [str(flag) for flag in found] if isinstance(found, list) else []


def python_command(module: str, *args: str) -> list[str]:
    """`python [this interpreter's options] -P -m module args...`. -P: `python -m` would put the
    working directory first on `sys.path`, and a `json.py` there (a service's data directory,
    a container's workdir) would be imported in place of the standard library's; PYTHONPATH
    (and a checkout's folder, `child_environment`) still counts."""
    flags = interpreter_flags()
    if "-P" not in flags and "-I" not in flags:  # -I implies -P
        flags.append("-P")
    return [sys.executable, *flags, "-m", module, *args]


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
        self.life = -1  # the read end of the pipe whose end of file tells workers we are gone

    def run(self) -> int:
        """Supervises until SIGINT or SIGTERM (0) or a worker that cannot start (3); the workers
        are stopped whatever ends it, an exception in this loop included."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        # Only this process holds the write end (not inheritable, never passed): when it exits,
        # however it exits, the workers read end of file and stop (`worker._Server`).
        self.life, alive = os.pipe()
        try:
            log.info("Started parent process [%d]", os.getpid())
            return self._supervise()
        finally:
            try:
                self._stop_all()
            finally:
                os.close(alive)
                os.close(self.life)
                self.life = -1
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _supervise(self) -> int:
        for _ in range(self.count):
            self.workers.append(self._start())
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
                    # It never listened: a race with the other workers' start (two first writes
                    # on a fresh database) passes on a second try; an app that cannot start (a
                    # bad database URL) fails every time, so give up as uvicorn does.
                    failures[index] += 1
                    log.error(
                        "worker [%d] could not start (exit code %s)%s",
                        worker.process.pid,
                        exitcode,
                        "; stopping" if failures[index] >= START_ATTEMPTS else "; trying again",
                    )
                    if failures[index] >= START_ATTEMPTS:
                        return STARTUP_FAILURE
                    time.sleep(RESTART_DELAY)
                worker.close()
                self.workers[index] = self._start()
        return 0

    def _wait(self, timeout: float) -> None:
        """Until a worker says it listens, or `timeout` seconds (a worker's death is seen by
        polling at that pace). A selector, not `select.select`: that one refuses a descriptor
        above 1023, which a supervisor started with many open files gets."""
        pending = {w.ready_fd: w for w in self.workers if not w.ready and w.ready_fd >= 0}
        with selectors.DefaultSelector() as selector:
            for fd in pending:
                selector.register(fd, selectors.EVENT_READ)
            for key, _ in selector.select(timeout):
                pending[key.fd].poll_ready()

    def _start(self) -> _Worker:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        spec = {"config": self.config, "host": self.host, "port": self.port}
        env = child_environment(
            {
                WORKER_VARIABLE: json.dumps(spec),
                READY_FD_VARIABLE: str(write_end),
                LIFE_FD_VARIABLE: str(self.life),
            }
        )
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
                python_command(WORKER_MODULE), env=env, pass_fds=(write_end, self.life)
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


def supervisor_command(host: str, port: int, workers: int) -> list[str]:
    """The supervisor's command line. The address and the number of workers follow the module
    for `ps` and `systemctl status` to show (`main` reads everything from the environment):
    nothing else, as every user may read a command line."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return python_command(__name__, "--bind", address, "--workers", str(workers))


def hand_over(config: dict[str, Any], host: str, port: int, workers: int) -> NoReturn:
    """Replaces this process (`baton serve`, with the whole app imported to check the database)
    by the supervisor alone: same process id, same standard streams, the memory of the app
    given back. `config` must be JSON (uvicorn's `http` as a "module:name" string)."""
    spec = {"config": config, "host": host, "port": port, "workers": workers}
    env = child_environment({SUPERVISOR_VARIABLE: json.dumps(spec)})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, supervisor_command(host, port, workers), env)  # noqa: S606


def main() -> NoReturn:
    """`python -P -m baton.server.runtime.workers --bind HOST:PORT --workers N`, as `hand_over`
    starts it (the arguments are for `ps` only: what it runs comes from the environment)."""
    refuse_unused_modules()
    spec = json.loads(os.environ.pop(SUPERVISOR_VARIABLE))
    sys.exit(serve(spec["config"], spec["host"], spec["port"], spec["workers"]))


if __name__ == "__main__":
    main()
