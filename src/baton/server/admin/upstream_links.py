"""The console's view of a user's upstream links (`templates/admin/user_links.html`): which
accounts of upstream OpenID providers sign in as this user, since when, and when last."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from baton.core.upstream import UpstreamLink


class UpstreamLinks(Protocol):
    """What the console asks of the store (`baton.store.sql.upstream.UpstreamStore`)."""

    async def upstream_links_of(self, user_id: int) -> list[UpstreamLink]: ...


async def user_links(request: Request, user_id: int) -> list[UpstreamLink]:
    store: UpstreamLinks = request.app.state.baton.store
    return await store.upstream_links_of(user_id)
