"""One server process of `baton serve --workers N`: `python -m baton.server.runtime.worker`.

Started by the supervisor (`baton.server.runtime.workers`), which hands it uvicorn's options in
`BATON_WORKER_SPEC` and a pipe in `BATON_WORKER_READY_FD`; the app's settings come in
`BATON_SERVE_CONFIG` (`baton.server.runtime.asgi`). It binds the address with `SO_REUSEPORT`,
serves until SIGTERM, and writes one byte to the pipe once it listens, so the supervisor tells a
worker that died serving from one that never started.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.importer import import_from_string

from baton.server.runtime.workers import (
    READY_FD_VARIABLE,
    STARTUP_FAILURE,
    WORKER_VARIABLE,
    listening_socket,
    refuse_unused_modules,
)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it listens."""

    def __init__(self, config: uvicorn.Config, ready_fd: int) -> None:
        super().__init__(config)
        self.ready_fd = ready_fd

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            os.write(self.ready_fd, b"1")


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
    host, port = spec["host"], spec["port"]
    sock = listening_socket(host, port, shared=True)
    config = uvicorn.Config(**uvicorn_options(spec["config"]), host=host, port=port)
    server = _Server(config, ready_fd)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
