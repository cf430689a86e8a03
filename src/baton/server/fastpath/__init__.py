"""The hot paths' short cuts around dependencies' general code, behind one seam.

Each short cut does what the general code does, with less work per request:
- `machine`: POSTs to /token, /introspect and /revoke skip the session middleware and the router;
- `onewrite`: uvicorn's protocol writes each response's head and body in one write;
- `NoStoreJSON` (baton.server.endpoints.errors) skips `Response.__init__` for its fixed headers.
They are all switched here by one option, `Settings.fast_paths` (`--no-fast-paths`,
`BATON_FAST_PATHS=0`): with it off every request takes the general way, which is how to tell
whether a bug lives in a short cut. Each is held to the general way's answers by a test that names
the dependency and its version when it no longer is (tests/server/test_machine.py,
test_onewrite.py, test_no_store_json.py, test_fastpath.py). Why each exists, and what it is worth
measured side by side, is in docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.routing import Route

from baton.server.fastpath.machine import ExceptionHandler, MachineEndpoints

if TYPE_CHECKING:
    from baton.server.runtime.cors import Cors


def machine_middleware(
    enabled: bool,
    *,
    routes: Sequence[Route],
    handlers: Mapping[type[Exception], ExceptionHandler],
    cors: Cors | None = None,
) -> list[Middleware]:
    """The machine endpoints' short way past the session middleware and the router, or nothing
    (the router serves them like any route). With `cors`, the short way gives its routes' CORS
    headers itself, as `CorsMiddleware` does on the general way."""
    if not enabled:
        return []
    return [Middleware(MachineEndpoints, routes=routes, handlers=handlers, cors=cors)]


def http_protocol(enabled: bool) -> Any:
    """uvicorn's `http=`: its httptools protocol writing each response at once, or its own."""
    if not enabled:
        return "httptools"
    from baton.server.fastpath import onewrite

    return onewrite.Protocol


def install(enabled: bool) -> None:
    """Switches the short cuts that belong to the process rather than to an app (`NoStoreJSON`'s);
    `create_app` calls it, so the app built last decides, as a server process builds one."""
    from baton.server.endpoints.errors import NoStoreJSON

    NoStoreJSON.short_cut = enabled
