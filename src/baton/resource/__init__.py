"""`baton.resource`: protect an API with Baton access tokens, opaque or JWT.

One `Verifier` per resource server; the `BatonMiddleware` for Starlette and FastAPI;
`verify_request` and the `flask_protect` / `django_protect` decorators for sync frameworks;
`ResourceMetadata` for RFC 9728 discovery; `TokenUseReporter` (run by the verifier) reports
the uses of superseded tokens to Baton, and `SUPERSEDED_HEADER` tells their clients. MCP
servers built with the `mcp` SDK: `baton.resource.mcp` (the `mcp` extra; not imported here).
See docs/middleware.md ("Protecting an API: `baton.resource`").
"""

from baton.resource.asgi import BatonMiddleware, principal_of, require
from baton.resource.consumer import FeedConsumer, SSEParser
from baton.resource.errors import (
    AuthError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    VerifierUnavailable,
)
from baton.resource.frameworks import django_protect, flask_protect
from baton.resource.headers import SUPERSEDED_HEADER, bearer_token, verify_request
from baton.resource.index import RevocationEvent, RevocationIndex
from baton.resource.jwks import JwksCache
from baton.resource.metadata import ResourceMetadata
from baton.resource.principal import Principal
from baton.resource.reports import TokenUseReporter
from baton.resource.verifier import Verifier

__all__ = [
    "SUPERSEDED_HEADER",
    "AuthError",
    "BatonMiddleware",
    "FeedConsumer",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "JwksCache",
    "MissingToken",
    "Principal",
    "ResourceMetadata",
    "RevocationEvent",
    "RevocationIndex",
    "SSEParser",
    "TokenUseReporter",
    "Verifier",
    "VerifierUnavailable",
    "bearer_token",
    "django_protect",
    "flask_protect",
    "principal_of",
    "require",
    "verify_request",
]
