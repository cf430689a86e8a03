"""What serving needs of the admin console from start-up: its routes, whose handlers load the
console (`baton.server.admin.console`, its pages and their helpers) on the first request to
it, `install`, and `record_lockout` (the sign-in pages record lockouts as security events).
A worker that nobody asks for a console page never loads the console.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from baton.core.vocabulary import SecurityEventKind
from baton.server.admin.queries import AdminQueries
from baton.server.routing import Endpoint, Handler, endpoint
from baton.server.runtime.context import baton, source_address

log = logging.getLogger("baton.admin")


def install(app: Starlette) -> None:
    """Gives the console its queries, on the server's own store."""
    app.state.admin_store = app.state.baton.store.admin()


async def record_lockout(request: Request, username: str, seconds: float) -> None:
    """A sign-in lockout, as a security event the console lists (best effort: a lockout must
    hold even when it cannot be recorded)."""
    found: AdminQueries | None = getattr(request.app.state, "admin_store", None)
    if found is None:
        return
    try:
        await found.record_security_event(
            SecurityEventKind.LOGIN_LOCKOUT,
            baton(request).clock.now(),
            subject=username[:200],
            source_address=source_address(request),
            detail=f"sign-in closed for {int(seconds) + 1} s after repeated failures",
        )
    except Exception:
        log.exception("could not record a sign-in lockout as a security event")


def _handler(name: str) -> Handler:
    """The console's handler `name`, the console imported by the first request to it."""

    async def handler(request: Request) -> Response:
        from baton.server.admin import console  # on the first console request, not at start-up

        found: Handler = getattr(console, name)
        return await found(request)

    handler.__name__ = handler.__qualname__ = name
    return handler


# Served under /admin (`baton.server.routes`), through the session middleware, and left out of
# the OpenAPI document: the console is for people, not for API clients.
ROUTES: tuple[Endpoint, ...] = tuple(
    endpoint(path, methods, _handler(name), documented=False)
    for path, methods, name in (
        ("/", "GET", "home"),
        ("/static/admin.css", "GET", "stylesheet"),
        ("/grants", "GET", "grants_page"),
        ("/grants/{grant_id}", "GET", "grant_page"),
        ("/grants/{grant_id}/timeline.svg", "GET", "timeline_svg"),
        ("/grants/{grant_id}/revoke", "POST", "revoke_grant"),
        ("/clients", "GET", "clients_page"),
        ("/clients", "POST", "create_client"),
        ("/clients/{client_id}", "GET", "client_page"),
        ("/clients/{client_id}", "POST", "update_client"),
        ("/clients/{client_id}/rotate", "POST", "rotate_secret"),
        ("/clients/{client_id}/policy", "POST", "schedule_policy"),
        ("/clients/{client_id}/policy/cancel", "POST", "cancel_policy"),
        ("/clients/{client_id}/disable", "POST", "disable_client"),
        ("/clients/{client_id}/enable", "POST", "enable_client"),
        ("/users", "GET", "users_page"),
        ("/users/sign-out", "POST", "sign_out_everywhere"),
        ("/users/claims", "GET", "user_page"),
        ("/users/claims", "POST", "set_user_claims"),
        ("/users/password", "POST", "set_user_password"),
        ("/users/disable", "POST", "disable_user"),
        ("/users/enable", "POST", "enable_user"),
        ("/users/delete", "POST", "delete_user"),
        ("/users/unlink", "POST", "unlink_upstream_account"),
        ("/events", "GET", "events_page"),
        ("/audit", "GET", "audit_page"),
    )
)
