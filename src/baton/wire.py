"""The JSON bodies Baton's endpoints answer, declared once.

The server builds them (`baton.server.endpoints`), the SDK and the resource-server middleware
read them (`baton.client`, `baton.resource`), and the OpenAPI document's schemas are generated
from them (`baton.server.endpoints.openapi`). So this module imports nothing but the standard
library: installing the SDK must not install the server.

A member's Python type says what JSON type it holds; `Facet` adds what the type cannot say (a
description, a minimum, a pattern), for the schema. A reader still checks every value it
receives: these types say what the server sends, not what arrived.
"""

# No `from __future__ import annotations`: under Python 3.11 it hides `NotRequired` from
# TypedDict's required keys, which the schemas are generated from.
from dataclasses import dataclass
from typing import Annotated, Literal, NotRequired, TypedDict


@dataclass(frozen=True, slots=True)
class Facet:
    """JSON Schema keywords narrowing a member beyond its Python type."""

    description: str | None = None
    minimum: int | None = None
    pattern: str | None = None


NonNegative = Annotated[int, Facet(minimum=0)]
# What a revocation names: one access token, or every token of a grant.
RevocationKind = Literal["access_token", "grant"]


class TokenResponse(TypedDict):
    """RFC 6749 §5.1, plus `refresh_token_expires_in`. A refresh token comes with its lifetime;
    `client_credentials` issues none."""

    access_token: Annotated[str, Facet("`bat_at_...` (opaque) or a JWT (RFC 9068).")]
    token_type: Literal["Bearer"]
    expires_in: NonNegative
    refresh_token: NotRequired[
        Annotated[str, Facet("`bat_rt_...`", pattern="^bat_rt_[0-9A-Za-z]{49}$")]
    ]
    refresh_token_expires_in: NotRequired[NonNegative]
    scope: str


class ErrorResponse(TypedDict):
    """RFC 6749 §5.2 error response."""

    error: str
    error_description: Annotated[str, Facet("Which rule fired.")]
    error_uri: NotRequired[str]


class ActiveToken(TypedDict):
    """RFC 7662 §2.2 for an active token, with Baton's grant and generation."""

    active: Literal[True]
    scope: str
    client_id: str
    token_type: Literal["Bearer", "refresh_token"]
    exp: int
    iat: int
    iss: str
    sub: NotRequired[str]
    username: NotRequired[str]
    aud: NotRequired[str | list[str]]  # one audience is a string, several an array
    jti: NotRequired[str]
    grant_id: str
    generation: NonNegative
    revocation_at: NotRequired[
        Annotated[int, Facet("When a live token already scheduled to die will die.")]
    ]


class InactiveToken(TypedDict):
    """RFC 7662 §2.2: an inactive, unknown or foreign token; nothing more."""

    active: Literal[False]


Introspection = ActiveToken | InactiveToken

INACTIVE: InactiveToken = {"active": False}


class FeedEvent(TypedDict):
    """One revocation, as the feed (`GET /revocations`, `/revocations/stream`) carries it: the
    tokens it names die at `effective_at`; after `expires_at` they would have expired anyway."""

    id: Annotated[int, Facet(minimum=1)]
    kind: RevocationKind
    grant_id: str
    effective_at: int
    expires_at: int
    jti: NotRequired[str | None]
    token_digest: NotRequired[Annotated[str | None, Facet(pattern="^[0-9a-f]{64}$")]]


class FeedPage(TypedDict):
    """A page of the revocation feed, and the watermark to resume from."""

    events: list[FeedEvent]
    watermark: Annotated[
        int, Facet("Resume from here with `since`: nothing after it is missed.", minimum=0)
    ]
