"""Strict parsing of `application/x-www-form-urlencoded` bodies.

RFC 6749 §3.1/§3.2: parameters sent without a value are treated as omitted, and request
parameters MUST NOT be included more than once. Oversized, mistyped and non-UTF-8 bodies are
refused with a 4xx that says why, before any of it reaches a rule.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request

from baton.server.errors import OAuthError, invalid_request

FORM_TYPE = "application/x-www-form-urlencoded"
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class Form:
    """The parameters of one request, each present at most once."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        seen: dict[str, str] = {}
        for name, value in pairs:
            if name in seen:
                raise invalid_request(f"parameter {name!r} is repeated (RFC 6749 §3.2)")
            seen[name] = value
        self._values = {k: v for k, v in seen.items() if v != ""}

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def require(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            raise invalid_request(f"missing parameter: {name}")
        return value

    def __contains__(self, name: str) -> bool:
        return name in self._values


def parse_pairs(raw: bytes | str) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("the body is not valid UTF-8 form encoding") from None
    for name, value in pairs:
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise invalid_request(f"parameter {name[:40]!r} contains control characters")
    return pairs


async def read_form(request: Request, max_bytes: int) -> Form:
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    # A body-less POST without a Content-Type is an empty form: its error names what is missing.
    untyped = content_type is None and declared in (None, "0")
    if media_type != FORM_TYPE and not untyped:
        raise _wrong_type()
    if declared is not None and (
        not (declared.isascii() and declared.isdigit()) or int(declared) > max_bytes
    ):
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    if media_type != FORM_TYPE and body:
        raise _wrong_type()
    return Form(parse_pairs(bytes(body)))


def _wrong_type() -> OAuthError:
    return OAuthError("invalid_request", f"Content-Type must be {FORM_TYPE}", status=415)


def _too_large(max_bytes: int) -> OAuthError:
    return OAuthError("invalid_request", f"request body exceeds {max_bytes} bytes", status=413)
