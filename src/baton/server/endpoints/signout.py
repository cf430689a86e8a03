""" "Sign out everywhere" for the signed-in user themselves: `POST /logout/everywhere`, the
second button of the /logout page.

It ends every live session of the user, on every device, in one transaction with the grants
those sessions gave without `offline_access` (OIDC Core §11) and a back-channel logout token for
each relying party (Back-Channel Logout 1.0 §2.7): what `baton user signout` and the console's
"sign out everywhere" do (`baton.store.sql.logout.end_user_sessions`). Someone who fears a
session cookie was copied (a shared computer, a lost phone) ends it from any browser they are
signed in on. The form carries the session's CSRF token: another site cannot sign anyone out.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from baton import wire
from baton.core.vocabulary import FeedEntryKind, RevocationCause
from baton.logs import get_logger
from baton.server.endpoints.forms import browser_form
from baton.server.endpoints.openapi import FORM, form_schema
from baton.server.endpoints.stores import EverywhereStore
from baton.server.observability import metrics
from baton.server.runtime.context import baton, source_address
from baton.server.runtime.pages import page
from baton.server.runtime.sessions import UID

log = get_logger("baton.logout")


_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
# The OpenAPI operation of `baton.server.routes` (its summary is the route's).
EVERYWHERE: dict[str, Any] = {
    "operationId": "logoutEverywhere",
    "requestBody": {"required": True, "content": {FORM: {"schema": form_schema(wire.LogoutForm)}}},
    "responses": {
        "200": {"description": "Signed out everywhere (or nobody was signed in).", **_PAGE},
        "400": {"description": "A malformed form.", **_PAGE},
        "403": {
            "description": "The form's CSRF token is missing or does not match the session's.",
            **_PAGE,
        },
        "413": {"description": "The form exceeds the body size limit.", **_PAGE},
        "415": {"description": "The form is not `application/x-www-form-urlencoded`.", **_PAGE},
    },
}


async def logout_everywhere(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    user_id = request.session.get(UID)
    if not isinstance(user_id, int):
        return page(request, "logout.html", {"signed_in": False})
    app = baton(request)
    store: EverywhereStore = app.store
    done = await store.end_user_op_sessions(user_id, app.clock.now())
    request.session.clear()  # this browser's cookie too, whose row has just ended
    counter = metrics.of(request)
    for _grant in done.revoked:
        counter.revoked(FeedEntryKind.GRANT, RevocationCause.LOGOUT)
    log.info(
        "signed out everywhere",
        sessions=done.sessions,
        revoked_grants=len(done.revoked),
        kept_offline=len(done.kept),
        backchannel_clients=len(done.told),
        source_address=source_address(request),
    )
    return page(request, "logout.html", {"everywhere": done.sessions})
