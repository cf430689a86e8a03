"""Review #5: a client no operator registered never gets an admin API scope (`admin:*`), even
if `--dynamic-client-scopes` names one: `baton serve` refuses the option, and the registration
policy drops them whatever Settings it is given."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest

from baton.cli.serve import _dynamic_client_scopes
from baton.server.endpoints.registration import client_policy
from baton.server.runtime.context import Baton


class _Resources:
    async def registered_resources(self) -> frozenset[str]:
        return frozenset({"https://api.example/mcp"})


def test_serve_refuses_admin_scopes_for_dynamic_clients(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        _dynamic_client_scopes(("read", "admin:clients:write"))
    assert stopped.value.code == 1
    assert "admin:clients:write" in capsys.readouterr().err
    _dynamic_client_scopes(("read", "write", "administrator"))  # not an admin API scope


def test_the_registration_policy_drops_admin_scopes() -> None:
    settings: Any = SimpleNamespace(
        dynamic_client_scopes=("read", "admin:clients:read", "admin:challenges"),
        dynamic_client_resources=(),
        registration="token",
    )
    app = cast(Baton, SimpleNamespace(settings=settings, oidc=False, store=_Resources()))
    policy = anyio.run(client_policy, app)
    assert policy.scopes == frozenset({"read"})
