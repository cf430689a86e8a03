"""OAuth errors (RFC 6749 §5.2) and how they become responses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from baton.core.vocabulary import ErrorCode
from baton.wire import ErrorResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# What Starlette's JSONResponse renders (compact, UTF-8, no NaN), with the encoder made once:
# `json.dumps` with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

# The raw headers `Response.init_headers` makes of NO_STORE, in its order, encoded once.
_NO_STORE_HEADERS = [
    (name.lower().encode("latin-1"), v.encode("latin-1")) for name, v in NO_STORE.items()
]
_JSON_TYPE = (b"content-type", b"application/json")


class NoStoreJSON(Response):
    """A JSON answer no cache may keep: token responses (RFC 6749 §5.1), their errors (§5.2)
    and introspection. It is a `JSONResponse` with the NO_STORE headers, byte for byte.

    The short cut (baton.server.fastpath, on unless `fast_paths` is off): an answer without
    headers of its own, nearly every one, sets what `Response.__init__` would set, with its fixed
    headers encoded once rather than on every response. It leans on `Response.__call__` reading
    only these attributes: tests/server/test_no_store_json.py compares both ways' bytes.
    """

    media_type = "application/json"
    short_cut: ClassVar[bool] = True  # set by baton.server.fastpath.install

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        if headers or not self.short_cut or status_code < 200 or status_code in (204, 304):
            # The general way; a header given under a default's name replaces it, as in a dict.
            merged = {**NO_STORE, **headers} if headers else NO_STORE
            super().__init__(content, status_code, merged)
            return
        self.status_code = status_code
        self.background = None
        self.body = body = _ENCODER.encode(content).encode("utf-8")
        length = (b"content-length", str(len(body)).encode("latin-1"))
        self.raw_headers = [*_NO_STORE_HEADERS, length, _JSON_TYPE]

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")


# RFC 6749 §5.2 (and §4.1.2.1): "Values for the error_description parameter MUST NOT include
# characters outside the set %x20-21 / %x23-5B / %x5D-7E": printable ASCII less `"` and `\`.
_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_OUTSIDE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_READABLE = str.maketrans({"§": "section ", '"': "'", "\\": "/"})


def error_description(text: str) -> str:
    """`text` within the characters RFC 6749 allows an error_description; anything else (a
    request's own bytes quoted back, say) becomes `?`."""
    if _DESCRIPTION.fullmatch(text):
        return text
    return _OUTSIDE.sub("?", text.translate(_READABLE))


class OAuthError(Exception):
    """An error answered as RFC 6749 §5.2 JSON."""

    def __init__(
        self,
        error: ErrorCode,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = error_description(description)
        self.status = status
        self.headers = headers or {}

    def response(self) -> NoStoreJSON:
        body: ErrorResponse = {"error": self.error, "error_description": self.description}
        return NoStoreJSON(body, status_code=self.status, headers=self.headers)


def invalid_request(description: str, status: int = 400) -> OAuthError:
    return OAuthError(ErrorCode.INVALID_REQUEST, description, status)


def invalid_client(description: str) -> OAuthError:
    # RFC 6749 §5.2: 401 with a WWW-Authenticate challenge (a MUST when the client tried the
    # Authorization header; harmless otherwise, and it tells the client which scheme works).
    challenge = {"WWW-Authenticate": 'Basic realm="baton"'}
    return OAuthError(ErrorCode.INVALID_CLIENT, description, 401, challenge)


async def oauth_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return exc.response()
