"""`baton serve --workers 2`: each process listens on a socket of its own, so a burst of new
connections is spread over them; a worker that dies is replaced; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import (
    BATON,
    PASSWORD,
    USERNAME,
    Seed,
    Server,
    ServerFactory,
    start_server,
)

pytestmark = pytest.mark.e2e

METADATA = "/.well-known/oauth-authorization-server"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in tasks.read_text().split()]
        except OSError:  # that thread has just ended
            continue
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process has just gone
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _inodes(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets on local port `port` in `state` (01 established, 0A listen)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def listening_workers(server: Server) -> list[int]:
    """The server processes that listen on the server's port (each on a socket of its own)."""
    listening = _inodes(urlsplit(server.url).port or 0, "0A")
    return [pid for pid in children(server.process.pid) if _socket_inodes(pid) & listening]


def open_connections(url: str, count: int) -> list[socket.socket]:
    """`count` keep-alive connections opened at once, each with one request answered."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sockets = [socket.create_connection((host, port)) for _ in range(count)]
    request = f"GET {METADATA} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for sock in sockets:
        sock.sendall(request)
    for sock in sockets:
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sockets


def wait_for(condition: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    pytest.fail("timed out")


@pytest.fixture(scope="module")
def two_workers(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `baton serve --workers 2` (three processes' imports) for the tests that leave it as
    they found it: every test that kills or stops a worker starts a server of its own."""
    options = {"workers": "2", "rate_limit_login": "0"}
    server = start_server(seed, tmp_path_factory.mktemp("two_workers"), options)
    try:
        yield server
    finally:
        server.stop()


def test_a_burst_of_connections_is_spread_over_the_workers(two_workers: Server) -> None:
    server = two_workers
    wait_for(lambda: len(listening_workers(server)) == 2)
    port = urlsplit(server.url).port or 0
    sockets = open_connections(server.url, 16)
    try:
        established = _inodes(port, "01")
        held = {pid: len(_socket_inodes(pid) & established) for pid in listening_workers(server)}
        assert sum(held.values()) == 16, held
        # By the kernel's hash of each connection: both at 0 or 16 is a chance of 2 in 65,536.
        # With one shared socket (uvicorn's --workers) the burst went to one process.
        assert min(held.values()) >= 1, held
    finally:
        for sock in sockets:
            sock.close()


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(
    baton_server: ServerFactory,
) -> None:
    server = baton_server(workers=2)
    wait_for(lambda: len(listening_workers(server)) == 2)
    first, second = listening_workers(server)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(listening_workers(server)) == 2 and first not in listening_workers(server))
    for _ in range(20):  # every connection lands on a live worker
        assert httpx.get(server.url + METADATA).status_code == 200
    survivors = listening_workers(server)
    assert second in survivors

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    for pid in survivors:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    assert "died (exit code -9); starting another" in server.stderr()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_a_port_someone_else_listens_on_is_refused_even_with_so_reuseport(
    two_workers: Server,
) -> None:
    """The kernel would share a port with any listener of the same user that also set
    SO_REUSEPORT: `baton serve --workers 2` must refuse it rather than split traffic."""
    server = two_workers
    port = urlsplit(server.url).port or 0
    command = [
        *BATON,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(server.db),
        "--workers",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert "address already in use" in (done.stdout + done.stderr).lower()
    assert httpx.get(server.url + METADATA).status_code == 200


def test_every_worker_honours_a_session_and_its_logout(two_workers: Server) -> None:
    """The session key is read (or generated, 0600) before the workers start, so a session
    signed in through one worker is one on every worker, and its logout ends it on all."""
    server = two_workers
    wait_for(lambda: len(listening_workers(server)) == 2)
    key_file = Path(f"{server.db}-session.key")
    assert key_file.stat().st_mode & 0o777 == 0o600

    def fresh_connection(cookies: httpx.Cookies) -> httpx.Client:
        # One connection per client: the kernel spreads them over the workers.
        return httpx.Client(base_url=server.url, cookies=cookies, follow_redirects=False)

    with fresh_connection(httpx.Cookies()) as browser:
        page = browser.get("/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = browser.post(
            "/login", data={"csrf": csrf, "next": "/", "username": USERNAME, "password": PASSWORD}
        )
        assert signed.status_code == 303, signed.text
        cookies = browser.cookies
    for _ in range(16):  # all on one worker: a chance of 2 in 65,536
        with fresh_connection(cookies) as other:
            assert "Sign out" in other.get("/").text
    with fresh_connection(cookies) as browser:
        page = browser.get("/logout")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert browser.post("/logout", data={"csrf": csrf}).status_code == 200
    for _ in range(16):
        with fresh_connection(cookies) as other:  # the cookie as it was before the logout
            assert "Sign out" not in other.get("/").text
