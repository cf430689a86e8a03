"""`NoStoreJSON` is Starlette's `JSONResponse` with the NO_STORE headers, byte for byte.

The guard on Starlette for its short cut (baton.server.fastpath): without headers of its own it
skips `Response.__init__` and sets the attributes `Response.__call__` reads. A Starlette release
that renders, orders or reads otherwise fails here, naming its version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import pytest
import starlette
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from baton.server.endpoints.errors import NO_STORE, NoStoreJSON


@pytest.fixture(params=[True, False], ids=["short-cut", "general"])
def short_cut(request: pytest.FixtureRequest) -> Iterator[bool]:
    before = NoStoreJSON.short_cut
    NoStoreJSON.short_cut = request.param
    yield request.param
    NoStoreJSON.short_cut = before


def sent(response: Response) -> list[Message]:
    """The ASGI messages the response sends, as a server would receive them."""
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "POST", "path": "/token", "headers": []}
    anyio.run(response, scope, receive, send)
    return messages


TOKEN = {
    "access_token": "bat_at_x",
    "token_type": "Bearer",
    "expires_in": 3600,
    "scope": "read write",
}

ANSWERS: list[tuple[Any, int, Mapping[str, str] | None]] = [
    (TOKEN, 200, None),
    ({"active": False}, 200, None),
    ({"error": "invalid_grant", "error_description": "x"}, 400, None),
    ({"error": "invalid_client", "error_description": "x"}, 401, {"WWW-Authenticate": "Basic"}),
    ({"error": "invalid_request", "error_description": "x"}, 405, {"Allow": "POST"}),
    ({"error": "server_error", "error_description": "x"}, 500, None),
    ({"name": "é ✓ \u2028", "n": [1, 2.5, None, True]}, 200, None),
    ({"cached": True}, 200, {"Cache-Control": "max-age=5"}),
    ({}, 204, None),
]


@pytest.mark.parametrize(("content", "status", "headers"), ANSWERS)
def test_it_sends_what_a_json_response_with_the_headers_sends(
    short_cut: bool, content: Any, status: int, headers: Mapping[str, str] | None
) -> None:
    expected = JSONResponse(content, status, {**NO_STORE, **(headers or {})})
    ours = NoStoreJSON(content, status, headers)
    way = "short cut" if short_cut else "general way"
    assert sent(ours) == sent(expected), (
        f"starlette {starlette.__version__}: NoStoreJSON ({way}) no longer sends what "
        "JSONResponse does; see baton.server.endpoints.errors"
    )
    assert (ours.status_code, ours.body, ours.raw_headers, ours.background) == (
        expected.status_code,
        expected.body,
        expected.raw_headers,
        expected.background,
    )


def test_it_refuses_what_json_response_refuses(short_cut: bool) -> None:
    with pytest.raises(ValueError):
        NoStoreJSON({"x": float("nan")})
