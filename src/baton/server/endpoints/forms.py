"""Strict parsing of `application/x-www-form-urlencoded` bodies, and of the JSON ones
(`read_json`: dynamic registration, stale token-use reports).

RFC 6749 §3.1/§3.2: parameters sent without a value are treated as omitted, and request
parameters MUST NOT be included more than once. Oversized, mistyped and non-UTF-8 bodies are
refused with a 4xx that says why, before any of it reaches a rule.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import OAuthError, invalid_request

FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
# Parameters a request may repeat: RFC 8707 §2 "the resource parameter ... MAY be used multiple
# times" in the authorization and token requests.
REPEATABLE = frozenset({"resource"})
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class Form:
    """The parameters of one request, each present at most once but those in `REPEATABLE`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        seen: dict[str, str] = {}
        repeated: dict[str, list[str]] = {}
        for name, value in pairs:
            if name in REPEATABLE:
                if value != "":
                    repeated.setdefault(name, []).append(value)
                continue
            if name in seen:
                raise invalid_request(f"parameter {name!r} is repeated (RFC 6749 section 3.2)")
            seen[name] = value
        self._values = {k: v for k, v in seen.items() if v != ""}
        self._repeated = repeated

    def get(self, name: str) -> str | None:
        """The parameter's value (a repeatable one is read with `every`)."""
        return self._values.get(name)

    def every(self, name: str) -> tuple[str, ...]:
        """Every value of a repeatable parameter, in the order sent, each once."""
        return tuple(dict.fromkeys(self._repeated.get(name, ())))

    def require(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            raise invalid_request(f"missing parameter: {name}")
        return value

    def __contains__(self, name: str) -> bool:
        return name in self._values


def parse_pairs(raw: bytes | str) -> list[tuple[str, str]]:
    if isinstance(raw, bytes):
        plain = raw.isascii() and b"%" not in raw and b"+" not in raw
        text = raw.decode("ascii") if plain else None
    else:
        plain = raw.isascii() and "%" not in raw and "+" not in raw
        text = raw if plain else None
    if text is not None and not _CONTROL.search(text):
        # Nothing to decode (no escapes, no `+`): what `parse_qsl` would return, without its
        # per-parameter unquoting (docs/performance.md, "Form parsing").
        return [_split(part) for part in text.split("&") if part]
    return _parse_escaped(raw)


def _split(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return name, value


def _parse_escaped(raw: bytes | str) -> list[tuple[str, str]]:
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
    headers = request.headers
    content_type = headers.get("content-type")
    media_type = (content_type or "").split(";")[0].strip().lower()
    declared = headers.get("content-length")
    # A body-less POST without a Content-Type is an empty form: its error names what is missing.
    untyped = content_type is None and declared in (None, "0")
    if media_type != FORM_TYPE and not untyped:
        raise _wrong_type()
    if declared is not None and (
        not (declared.isascii() and declared.isdigit()) or int(declared) > max_bytes
    ):
        raise _too_large(max_bytes)
    body = await _read_body(request, max_bytes)
    if media_type != FORM_TYPE and body:
        raise _wrong_type()
    return Form(parse_pairs(body))


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, straight from the ASGI messages (Starlette's `stream()` does the same through
    an async generator); a body of one message, the usual case, is never copied."""
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class NotJSON(ValueError):
    """The body is not JSON: each endpoint answers it in its own words (RFC 7591's
    `invalid_client_metadata`, or `invalid_request`)."""


async def read_json(request: Request, max_bytes: int) -> object:
    """The request's JSON value: 415 for another media type, 413 over `max_bytes` (declared or
    read), `NotJSON` for a body that is not JSON (RFC 8259: `NaN` and `Infinity` are not)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_TYPE:
        raise OAuthError(ErrorCode.INVALID_REQUEST, f"Content-Type must be {JSON_TYPE}", 415)
    declared = request.headers.get("content-length")
    if declared is not None and (
        not (declared.isascii() and declared.isdigit()) or int(declared) > max_bytes
    ):
        raise _too_large(max_bytes)
    body = await _read_body(request, max_bytes)
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise NotJSON() from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity (RFC 8259 §6)


def _wrong_type() -> OAuthError:
    return OAuthError(ErrorCode.INVALID_REQUEST, f"Content-Type must be {FORM_TYPE}", status=415)


def _too_large(max_bytes: int) -> OAuthError:
    return OAuthError(
        ErrorCode.INVALID_REQUEST, f"request body exceeds {max_bytes} bytes", status=413
    )


async def browser_form(request: Request) -> Form | Response:
    """A form posted by one of our pages, with its CSRF token checked; or the error page."""
    # Imported here: the machine endpoints parse forms without the server's pages.
    from baton.server.runtime.context import baton
    from baton.server.runtime.pages import N_, error_page
    from baton.server.runtime.sessions import csrf_ok

    try:
        form = await read_form(request, baton(request).settings.max_body_bytes)
    except OAuthError as exc:
        return unreadable(request, exc)
    if not csrf_ok(request.session, form.get("csrf")):
        return error_page(request, N_("The form expired. Go back and try again."), 403)
    return form


def unreadable(request: Request, exc: OAuthError) -> Response:
    """The error page of a request whose parameters cannot be read (`exc`, from `read_form` or
    `Form`): a sentence in the reader's language around the parser's reason, which stays as
    the parser says it (a technical detail, in English like the JSON `error_description`)."""
    from baton.server.runtime.pages import N_, error_page

    message = N_("The request cannot be read: %(reason)s.")
    return error_page(request, message, exc.status, exc.headers, {"reason": exc.description})
