"""One server process of `baton serve --workers N`: `python -P -m baton.server.runtime.worker`.

Started by the supervisor (`baton.server.runtime.workers`), which hands it uvicorn's options in
`BATON_WORKER_SPEC`, a pipe in `BATON_WORKER_READY_FD` and another in `BATON_WORKER_LIFE_FD`;
the app's settings come in `BATON_SERVE_CONFIG` (`baton.server.runtime.asgi`). It binds the
address with `SO_REUSEPORT`, serves until SIGTERM, and writes one byte to the first pipe once it
listens, so the supervisor tells a worker that died serving from one that never started. End of
file on the second pipe means the supervisor is gone (killed, SIGKILL included): the worker
stops as on SIGTERM rather than serve on, unsupervised, holding the port.
"""

from __future__ import annotations

import signal

# Ctrl-C reaches the whole process group: a worker still starting (importing, binding) just
# ends, without a KeyboardInterrupt traceback; once it serves, uvicorn's own handler stops it
# gracefully.
signal.signal(signal.SIGINT, signal.SIG_DFL)

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import uvicorn  # noqa: E402
from uvicorn.importer import import_from_string  # noqa: E402

from baton.server.runtime.workers import (  # noqa: E402
    LIFE_FD_VARIABLE,
    READY_FD_VARIABLE,
    STARTUP_FAILURE,
    WORKER_VARIABLE,
    listening_socket,
    refuse_unused_modules,
)

log = logging.getLogger("uvicorn.error")


class _Server(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it listens, and stopping once the
    supervisor is gone (end of file on `life_fd`, -1 for none)."""

    def __init__(self, config: uvicorn.Config, ready_fd: int, life_fd: int = -1) -> None:
        super().__init__(config)
        self.ready_fd = ready_fd
        self.life_fd = life_fd

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            os.write(self.ready_fd, b"1")
            if self.life_fd >= 0:
                asyncio.get_running_loop().add_reader(self.life_fd, self._supervisor_gone)

    def _supervisor_gone(self) -> None:
        """The life pipe is readable: nothing is ever written to it, so its writer (the
        supervisor) has exited. Stop as on SIGTERM: the requests in flight are finished."""
        asyncio.get_running_loop().remove_reader(self.life_fd)
        log.warning("supervisor gone; stopping worker [%d]", os.getpid())
        self.should_exit = True


def uvicorn_options(config: dict[str, Any]) -> dict[str, Any]:
    """uvicorn.Config's arguments from their JSON: an `http` protocol named "module:attribute"
    is imported (uvicorn takes only its own protocols' names as strings)."""
    options = dict(config)
    http = options.get("http")
    if isinstance(http, str) and ":" in http:
        options["http"] = import_from_string(http)
    return options


def main() -> None:  # pragma: no cover - runs in the worker process
    refuse_unused_modules()
    spec = json.loads(os.environ.pop(WORKER_VARIABLE))
    ready_fd = int(os.environ.pop(READY_FD_VARIABLE))
    life_fd = int(os.environ.pop(LIFE_FD_VARIABLE, "-1"))
    host, port = spec["host"], spec["port"]
    sock = listening_socket(host, port, shared=True)
    config = uvicorn.Config(**uvicorn_options(spec["config"]), host=host, port=port)
    server = _Server(config, ready_fd, life_fd)
    # Ctrl-C in a terminal signals the whole process group: uvicorn stops gracefully, then
    # raises the SIGINT again, which would print a KeyboardInterrupt traceback per worker (the
    # supervisor, signalled too, is stopping them all anyway).
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
