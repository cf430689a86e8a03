"""The supervisor of `baton serve --workers N` (baton.server.runtime.workers), without a database:
the
address check, and giving up on workers that cannot start. tests/e2e/test_workers.py runs it."""

from __future__ import annotations

import errno
import socket
import time

import pytest

from baton.server.runtime.workers import Supervisor, claim_port, listening_socket


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
    config = {"app": "baton.no_such_module:create", "factory": True, "log_level": "critical"}
    port = claim_port("127.0.0.1", 0)
    started = time.monotonic()
    assert Supervisor(config, "127.0.0.1", port, 2).run() == 3
    assert time.monotonic() - started < 30
    with socket.create_server(("127.0.0.1", port)):  # nothing was left listening
        pass
