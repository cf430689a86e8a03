"""baton.client: an OAuth 2.0 client SDK that makes refresh token rotation invisible.

Works with Baton and with any RFC 6749 server that rotates refresh tokens: the pair is persisted
before any caller sees it, one refresh at a time reaches the server across threads, tasks and
processes, and a lost token response is recovered by retrying the same refresh token inside the
server's leeway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton.client.auth import BearerAuth, is_invalid_token
from baton.client.endpoint import OAuthClient
from baton.client.errors import (
    AuthorizationFlowError,
    AuthorizationServerUnavailable,
    ClientError,
    LockLost,
    ReauthorizationRequired,
    TokenEndpointError,
)
from baton.client.flow import (
    AuthorizationRequest,
    authorization_url,
    code_from_callback,
    exchange_code,
)
from baton.client.pkce import Pkce
from baton.client.policy import (
    ClientPolicyInfo,
    PolicyKnobs,
    ScheduledChange,
    aclient_policy,
    client_policy,
)
from baton.client.refresher import FailureEvent, Hooks, Refresher, RotationEvent, RotationInfo
from baton.client.stores import (
    FileStore,
    Lease,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    TokenStore,
    store_pair,
)
from baton.client.superseded import SupersededEvent
from baton.client.tokens import TokenPair, fingerprint

if TYPE_CHECKING:
    from baton.client.requests_adapter import RequestsAuth

__all__ = [
    "AuthorizationFlowError",
    "AuthorizationRequest",
    "AuthorizationServerUnavailable",
    "BearerAuth",
    "ClientError",
    "ClientPolicyInfo",
    "FailureEvent",
    "FileStore",
    "Hooks",
    "Lease",
    "LockLost",
    "MemoryStore",
    "OAuthClient",
    "Pkce",
    "PolicyKnobs",
    "ReauthorizationRequired",
    "RedisStore",
    "Refresher",
    "RequestsAuth",
    "RotationEvent",
    "RotationInfo",
    "SQLiteStore",
    "ScheduledChange",
    "SupersededEvent",
    "TokenEndpointError",
    "TokenPair",
    "TokenStore",
    "aclient_policy",
    "authorization_url",
    "client_policy",
    "code_from_callback",
    "exchange_code",
    "fingerprint",
    "is_invalid_token",
    "store_pair",
]


def __getattr__(name: str) -> Any:
    # `requests` is optional: imported only when its adapter is asked for.
    if name == "RequestsAuth":
        from baton.client.requests_adapter import RequestsAuth

        return RequestsAuth
    raise AttributeError(f"module 'baton.client' has no attribute {name!r}")
