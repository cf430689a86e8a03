"""The connection of `fetching`'s requests: to the addresses `fetching` checked, never to a
second lookup of the name (DNS rebinding). A module of its own so that httpcore is imported on
the first outbound request, not by every worker at start-up.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence

import httpcore

from baton.core.addresses import IPAddress


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the checked addresses, whatever host httpcore asks for: the name's second
    resolution, the one DNS rebinding would answer, never happens. The addresses are tried in
    order (the resolver's preference) until one accepts."""

    def __init__(self, addresses: Sequence[IPAddress]) -> None:
        self._addresses = addresses
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in self._addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last = exc
        raise httpcore.ConnectError(str(last) if last else "no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - never asked for
        raise httpcore.ConnectError("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - no retries
        await self._backend.sleep(seconds)


def pinned_pool(
    addresses: Sequence[IPAddress], ssl_context: ssl.SSLContext
) -> httpcore.AsyncConnectionPool:
    """One connection, to the checked addresses only, no retry, no proxy (httpcore reads no
    environment)."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        network_backend=_PinnedBackend(addresses),
        http1=True,
        http2=False,
        retries=0,
        max_connections=1,
    )
