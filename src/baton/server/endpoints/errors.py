"""OAuth errors (RFC 6749 §5.2) and how they become responses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from baton.wire import ErrorResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# What Starlette's JSONResponse renders (compact, UTF-8, no NaN), with the encoder made once:
# `json.dumps` with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


_NO_STORE_JSON_HEADERS = [*_encoded(NO_STORE), (b"content-type", b"application/json")]


class NoStoreJSON(Response):
    """A JSON answer no cache may keep: token responses (RFC 6749 §5.1), their errors (§5.2)
    and introspection. Its fixed headers are encoded once, not on every response."""

    media_type = "application/json"

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = _ENCODER.encode(content).encode("utf-8")
        length = (b"content-length", str(len(self.body)).encode("latin-1"))
        if not headers:
            self.raw_headers = [*_NO_STORE_JSON_HEADERS, length]
            return
        given = _encoded(headers)
        names = {name for name, _ in given}  # a header the caller gives replaces the default
        self.raw_headers = [
            *(h for h in _NO_STORE_JSON_HEADERS if h[0] not in names),
            length,
            *given,
        ]


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
        error: str,
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
    return OAuthError("invalid_request", description, status)


def invalid_client(description: str) -> OAuthError:
    # RFC 6749 §5.2: 401 with a WWW-Authenticate challenge (a MUST when the client tried the
    # Authorization header; harmless otherwise, and it tells the client which scheme works).
    challenge = {"WWW-Authenticate": 'Basic realm="baton"'}
    return OAuthError("invalid_client", description, 401, challenge)


async def oauth_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return exc.response()
