"""The console's view of a user's upstream links (`templates/admin/user_links.html`): which
accounts of upstream OpenID providers sign in as this user, since when, and when last."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from baton.core.upstream import UpstreamLink
from baton.store.admin import Actor


class UpstreamLinks(Protocol):
    """What the console asks of the store (`baton.store.sql.upstream.UpstreamStore`)."""

    async def upstream_links_of(self, user_id: int) -> list[UpstreamLink]: ...

    async def unlink_upstream(
        self, user_id: int, provider_id: str, subject: str, actor: Actor
    ) -> bool: ...


def _store(request: Request) -> UpstreamLinks:
    store: UpstreamLinks = request.app.state.baton.store
    return store


async def user_links(request: Request, user_id: int) -> list[UpstreamLink]:
    return await _store(request).upstream_links_of(user_id)


async def unlink(
    request: Request, user_id: int, provider_id: str, subject: str, actor: Actor
) -> bool:
    """The console's **Unlink**: that upstream account no longer signs in as this user."""
    return await _store(request).unlink_upstream(user_id, provider_id, subject, actor)
