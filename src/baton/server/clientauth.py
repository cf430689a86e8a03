"""Client authentication at the token, revocation and introspection endpoints.

`client_secret_basic` (RFC 6749 §2.3.1: id and secret are form-encoded before Base64, so they are
decoded here; strict clients send `%2D` for `-`), `client_secret_post`, and `none` for public
clients, which only identify themselves. One method per request (RFC 6749 §2.3).
"""

from __future__ import annotations

import base64
import hmac
from urllib.parse import unquote_plus

from starlette.requests import Request

from baton.core.tokens import digest
from baton.server.errors import invalid_client, invalid_request
from baton.server.forms import Form
from baton.store.base import Client, Store


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, secret) from an `Authorization: Basic` header, or None if it is not Basic.

    Raises invalid_client for a Basic header that cannot be decoded.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error is one; non-ASCII input raises it too
        raise invalid_client("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed Basic credentials: no ':' separator")
    try:
        return unquote_plus(raw_id, errors="strict"), unquote_plus(raw_secret, errors="strict")
    except UnicodeDecodeError:
        raise invalid_client("malformed Basic credentials: not UTF-8") from None


async def enabled_client(store: Store, client_id: str) -> Client | None:
    """The client, unless it is unknown or disabled: the one check every endpoint makes, so a
    client disabled in the console is refused everywhere at once."""
    client = await store.get_client(client_id)
    return client if client is not None and client.disabled_at is None else None


async def authenticate(
    request: Request, form: Form, store: Store, *, allow_public: bool = True
) -> Client:
    header = request.headers.get("authorization")
    basic = basic_credentials(header) if header else None
    if header and basic is None:
        raise invalid_client("unsupported Authorization scheme: use Basic")
    post_secret = form.get("client_secret")
    if basic is not None:
        if post_secret is not None:
            raise invalid_request("use one client authentication method, not two (RFC 6749 §2.3)")
        client_id, secret = basic
        body_id = form.get("client_id")
        if body_id is not None and body_id != client_id:
            raise invalid_request("client_id in the body differs from the Basic credentials")
    else:
        client_id, secret = form.get("client_id") or "", post_secret or ""
        if not client_id:
            raise invalid_client("client authentication required")

    client = await enabled_client(store, client_id)
    if client is None:
        raise invalid_client("unknown client")
    if client.is_public:
        if secret:
            raise invalid_client("public clients have no secret")
        if not allow_public:
            raise invalid_client("this endpoint requires a confidential client")
        return client
    if not secret:
        raise invalid_client("client authentication required")
    # Server-generated secrets carry 256 bits: a SHA-256 digest is enough, and the comparison
    # of digests runs in constant time.
    expected = client.secret_digest
    if expected is None or not hmac.compare_digest(digest(secret), expected):
        raise invalid_client("client authentication failed")
    return client
