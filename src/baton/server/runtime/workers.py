"""`baton serve --workers N`: N server processes, each listening on a socket of its own.

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
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Event as EventType
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

log = logging.getLogger("uvicorn.error")

STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its requests after SIGTERM
START_ATTEMPTS = 3  # failed starts in a row of one worker before the supervisor gives up
RESTART_DELAY = 0.5  # seconds before a worker that failed to start is started again


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


class _Server(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it listens."""

    def __init__(self, config: uvicorn.Config, ready: EventType) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


def _worker(  # pragma: no cover - runs in the worker process
    config: dict[str, Any], host: str, port: int, ready: EventType
) -> None:
    sock = listening_socket(host, port, shared=True)
    server = _Server(uvicorn.Config(**config, host=host, port=port), ready)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    ready: EventType


@dataclass
class Supervisor:
    config: dict[str, Any]  # uvicorn.Config's arguments, but host and port
    host: str
    port: int
    count: int
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False

    def run(self) -> int:
        context = multiprocessing.get_context("spawn")
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            log.info("Started parent process [%d]", os.getpid())
            self.workers = [self._start(context) for _ in range(self.count)]
            failures = [0] * self.count  # failed starts in a row, per worker
            while not self.stopping:
                multiprocessing.connection.wait(
                    [w.process.sentinel for w in self.workers], timeout=0.5
                )
                for index, worker in enumerate(self.workers):
                    if worker.process.is_alive() or self.stopping:
                        continue
                    if worker.ready.is_set():
                        failures[index] = 0
                        log.warning(
                            "worker [%d] died (exit code %s); starting another",
                            worker.process.pid,
                            worker.process.exitcode,
                        )
                    else:
                        # It never listened: a race with the other workers' start (two first
                        # writes on a fresh database) passes on a second try; an app that cannot
                        # start (a bad database URL) fails every time, so give up as uvicorn does.
                        failures[index] += 1
                        log.error(
                            "worker [%d] could not start (exit code %s)%s",
                            worker.process.pid,
                            worker.process.exitcode,
                            "; stopping" if failures[index] >= START_ATTEMPTS else "; trying again",
                        )
                        if failures[index] >= START_ATTEMPTS:
                            self._stop_all()
                            return STARTUP_FAILURE
                        time.sleep(RESTART_DELAY)
                    self.workers[index] = self._start(context)
            self._stop_all()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, context: SpawnContext) -> _Worker:
        ready = context.Event()
        process = context.Process(
            target=_worker, args=(self.config, self.host, self.port, ready), name="baton-worker"
        )
        process.start()
        return _Worker(process, ready)

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning("worker [%d] did not stop in time; killing it", worker.process.pid)
                worker.process.kill()
                worker.process.join()
        log.info("Stopping parent process [%d]", os.getpid())


def serve(config: dict[str, Any], host: str, port: int, workers: int) -> int:
    """Runs `workers` server processes on (host, port) until SIGINT or SIGTERM; the exit code."""
    uvicorn.Config(**config, host=host, port=port)  # configures logging, as uvicorn.run does
    try:
        port = claim_port(host, port)
    except OSError as exc:
        log.error("%s", exc)
        return STARTUP_FAILURE
    return Supervisor(config, host, port, workers).run()
