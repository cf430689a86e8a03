"""The client's policy as the server holds it, and the change it has scheduled (issue 28).

Baton lets an operator change one client's policy (access-token lifetime, leeway, retry policy,
rotation, grant types, PKCE) from a date, first in report-only mode. `client_policy()` reads
the server's `client_policy_endpoint` (RFC 8414 metadata) for a client id, so that the
integrator's app (a test, a start-up check) sees what changes and when, before it does:

    policy = client_policy("https://baton.example", "my-client")
    if policy.scheduled is not None:
        print(policy.scheduled.effective_at, policy.changes())  # {"leeway": (300, 60)}

`aclient_policy()` is the same with an `httpx.AsyncClient`. The settings are `PolicyKnobs`:
the knobs of `baton.core.client_policy.PolicySettings`, every one resolved (the server's
defaults filled in; `grant_types` None: every grant the client's kind allows). They are read
leniently (a member this SDK does not know is ignored, a grant type it does not know is kept):
a newer server must not break an older app's check.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, fields
from typing import Any

import httpx

from baton.client.errors import AuthorizationServerUnavailable, ClientError
from baton.client.refresher import METADATA_PATH

ENDPOINT = "client_policy_endpoint"  # Baton's metadata member naming `GET /client-policy`


@dataclass(frozen=True, slots=True)
class PolicyKnobs:
    """A client's policy, every knob resolved; the names and meanings of
    `baton.core.client_policy.PolicySettings` (a test keeps them the same)."""

    access_ttl: int  # seconds an access token lives (`exp`)
    refresh_idle_ttl: int  # seconds a refresh token lives unused
    refresh_absolute_ttl: int  # seconds a grant lives, refreshed or not
    leeway: int  # seconds an exchanged pair stays usable for a retry (0 under `strict`)
    retry: str  # what a retry inside the leeway gets: `replay`, `fork` or `strict`
    rotate: bool  # False: a confidential client keeps its refresh token
    grant_types: tuple[str, ...] | None  # the grant types allowed (None: every one)
    require_pkce: bool  # authorization requests without PKCE are refused

    @classmethod
    def from_json(cls, value: Any) -> PolicyKnobs:
        if not isinstance(value, dict):
            raise TypeError("settings are not an object")
        grant_types = value.get("grant_types")
        if grant_types is not None and not (
            isinstance(grant_types, list) and all(isinstance(g, str) for g in grant_types)
        ):
            raise TypeError("grant_types is not a list of strings")
        retry = value["retry"]
        if not isinstance(retry, str):
            raise TypeError("retry is not a string")
        return cls(
            access_ttl=_whole(value["access_ttl"]),
            refresh_idle_ttl=_whole(value["refresh_idle_ttl"]),
            refresh_absolute_ttl=_whole(value["refresh_absolute_ttl"]),
            leeway=_whole(value["leeway"]),
            retry=retry,
            rotate=_flag(value["rotate"]),
            grant_types=None if grant_types is None else tuple(grant_types),
            require_pkce=_flag(value["require_pkce"]),
        )


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    """A change of the client's policy: its settings from `effective_at` on (None: not dated
    yet, only reported). `report_only`: until then the server only records what it would have
    refused. `scheduled_at`: when the operator made it."""

    settings: PolicyKnobs
    effective_at: int | None
    report_only: bool
    scheduled_at: int


@dataclass(frozen=True, slots=True)
class ClientPolicyInfo:
    """The policy in force for `client_id` (since `since`; None: the server's own), and the
    change scheduled, if any."""

    client_id: str
    in_force: PolicyKnobs
    since: int | None
    scheduled: ScheduledChange | None

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """The knobs the scheduled change sets otherwise: name -> (in force, scheduled)."""
        if self.scheduled is None:
            return {}
        now, then = self.in_force, self.scheduled.settings
        return {
            name: (getattr(now, name), getattr(then, name))
            for name in (f.name for f in fields(PolicyKnobs))
            if getattr(now, name) != getattr(then, name)
        }

    @classmethod
    def from_json(cls, body: Any) -> ClientPolicyInfo:
        """The answer of `GET /client-policy` (unknown members are ignored: a newer server may
        add knobs); `ClientError` when it is malformed."""
        try:
            in_force = body["in_force"]
            since = in_force.get("since")
            scheduled = body.get("scheduled")
            change = None
            if scheduled is not None:
                effective_at = scheduled.get("effective_at")
                change = ScheduledChange(
                    PolicyKnobs.from_json(scheduled["settings"]),
                    None if effective_at is None else _whole(effective_at),
                    _flag(scheduled.get("report_only", False)),
                    _whole(scheduled["scheduled_at"]),
                )
            client_id = body["client_id"]
            if not isinstance(client_id, str):
                raise TypeError("client_id")
            return cls(
                client_id,
                PolicyKnobs.from_json(in_force),
                None if since is None else _whole(since),
                change,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ClientError(f"malformed client policy answer: {exc}") from exc


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{value!r} is not a whole number of seconds")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    return value


# -- the two requests, written once; `client_policy` and `aclient_policy` send them ------------

_Steps = Generator[tuple[str, dict[str, str] | None], httpx.Response, ClientPolicyInfo]


def _steps(issuer: str, client_id: str) -> _Steps:
    metadata_url = issuer.rstrip("/") + METADATA_PATH
    document = _json(metadata_url, (yield metadata_url, None))
    if document.get("issuer") != issuer:
        raise ClientError(
            f"the metadata at {metadata_url} names issuer {document.get('issuer')!r}, not"
            f" {issuer!r} (RFC 8414 §3.3: they must be identical)"
        )
    endpoint = document.get(ENDPOINT)
    if not isinstance(endpoint, str) or not endpoint:
        raise ClientError(f"{issuer} publishes no {ENDPOINT}: a server without per-client policies")
    response = yield endpoint, {"client_id": client_id}
    if response.status_code == 404:
        raise ClientError(f"{issuer} knows no client {client_id!r}")
    return ClientPolicyInfo.from_json(_json(endpoint, response))


def _json(url: str, response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 500:
        raise AuthorizationServerUnavailable(
            f"{url} answered {response.status_code}", status=response.status_code
        )
    if response.status_code != 200:
        raise ClientError(f"{url} answered {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(f"{url} did not answer JSON") from exc
    if not isinstance(body, dict):
        raise ClientError(f"{url} did not answer a JSON object")
    return body


def client_policy(
    issuer: str, client_id: str, *, http: httpx.Client | None = None, timeout: float = 10.0
) -> ClientPolicyInfo:
    """The policy `issuer` holds for `client_id` and its scheduled change. Raises
    `AuthorizationServerUnavailable` when the server cannot be reached, `ClientError` for a
    server without the endpoint, an unknown client or a malformed answer."""
    own = http is None
    client = http or httpx.Client()
    steps = _steps(issuer, client_id)
    try:
        url, params = next(steps)
        while True:
            try:
                response = client.get(url, params=params, timeout=timeout)
            except httpx.TransportError as exc:
                raise AuthorizationServerUnavailable(f"{url} unreachable: {exc!r}") from exc
            url, params = steps.send(response)
    except StopIteration as done:
        info: ClientPolicyInfo = done.value
        return info
    finally:
        if own:
            client.close()


async def aclient_policy(
    issuer: str,
    client_id: str,
    *,
    http: httpx.AsyncClient | None = None,
    timeout: float = 10.0,
) -> ClientPolicyInfo:
    """`client_policy` with an `httpx.AsyncClient`."""
    own = http is None
    client = http or httpx.AsyncClient()
    steps = _steps(issuer, client_id)
    try:
        url, params = next(steps)
        while True:
            try:
                response = await client.get(url, params=params, timeout=timeout)
            except httpx.TransportError as exc:
                raise AuthorizationServerUnavailable(f"{url} unreachable: {exc!r}") from exc
            url, params = steps.send(response)
    except StopIteration as done:
        info: ClientPolicyInfo = done.value
        return info
    finally:
        if own:
            await client.aclose()
