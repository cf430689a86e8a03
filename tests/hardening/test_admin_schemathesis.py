"""Schemathesis over the whole admin API (issue 27): every operation of `/openapi.json` under
`/admin/api/v1` (chosen by path prefix, so routes added later are fuzzed without a line here),
called with a live token of a confidential client granted every `AdminScope`, so the requests get
past authorization to the handlers. Zero 5xx, and every answer as documented: status, content
type, headers and body (the checks of `tests.hardening.api_fuzz`).

Random path parameters reach only 404s, so most calls name real things instead: users (one
disabled), a console administrator, a client and a live grant, made afresh before each operation
(an earlier one may have deleted, disabled or revoked the last ones). Destructive calls are
fuzzed too (disable, delete, revoke, rotate); what keeps the run deterministic and able to go on
is that the caller itself is never named: its own client id is replaced wherever a generated
value would carry it, so fuzz never disables, deletes or rotates the client whose token it uses
(and its token's grant id is never generated: it appears in no answer). Each call is checked
against the document, whatever state the earlier calls left.

Few examples per operation (`EXAMPLES`), derandomized: seconds in all; `make fuzz` is the place
for long runs of the public endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import schemathesis
from argon2 import PasswordHasher
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.python import asgi as schemathesis_asgi
from starlette.testclient import TestClient

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.core.policy import Policy
from baton.server.admin import api_records
from baton.server.admin.api import PREFIX, AdminScope
from baton.server.app import create_app
from baton.store.admin import Actor
from baton.store.sql import SQLStore
from tests.hardening.api_fuzz import CHECKS, Report, _failure_text
from tests.support import (
    ISSUER,
    RegisteredClient,
    first_pair,
    migrated_store,
    register_client,
    register_user,
)

EXAMPLES = 8  # per operation
EVERY_SCOPE = " ".join(AdminScope)


@dataclass
class AdminTarget:
    """The app and the things the calls may name; `caller` is never one of them."""

    app: Any
    http: TestClient
    store: SQLStore
    schema: Any
    caller: RegisteredClient
    token: str
    victim: RegisteredClient | None = None
    names: dict[str, list[str]] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    calls: int = 0
    rounds: int = 0

    def replenish(self, path: str) -> None:
        """Fresh things to name before each operation: the users and grant an earlier
        operation disabled, deleted or revoked would only get 409s."""
        self.rounds += 1
        fresh = [f"fuzz-{self.rounds}-{n}" for n in ("a", "b")]
        for name in fresh:
            register_user(self.store, name)
        # One disabled, for `enable` to find.
        anyio.run(self.store.admin().disable_user, fresh[1], Actor("fuzz-setup", None, 0))
        self.names["username"] = [*fresh, "fuzz-root"]
        self.names["subject"] = fresh
        # A fresh client too: an earlier operation (the clients routes) may have disabled or
        # deleted the last one.
        self.victim = register_client(self.store, scope="read", name=f"fuzzed client {self.rounds}")
        self.names["client_id"] = self.names["id"] = [self.victim.id]
        if "{grant_id}" in path:
            self.names["grant_id"] = [self.grant()]

    def grant(self) -> str:
        """A live grant of the victim client, signed in as `alice`."""
        assert self.victim is not None
        first_pair(self.http, self.victim, scope="read")
        (live,) = anyio.run(self.store.list_grants, self.victim.id, "alice")
        return live.grant.id

    def prepare(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
        """The call's kwargs: the caller's bearer token, and most of the time real values for
        the path parameters; never the caller's own client id."""
        self.calls += 1
        params = case.path_parameters or {}
        for name in list(params):
            known = self.names.get(name)
            if known and self.calls % 4 != 0:
                params[name] = known[self.calls % len(known)]
            if params[name] == self.caller.id:
                params[name] = "not-the-caller"
        for values in (case.query, case.body):
            if isinstance(values, dict):
                for key, value in list(values.items()):
                    if value == self.caller.id:
                        values[key] = "not-the-caller"
        return {"headers": {"Authorization": f"Bearer {self.token}"}}

    def record(self, case: schemathesis.Case[Any], status: int) -> None:
        self.report.requests += 1
        self.report.by_status[(case.operation.label, status)] += 1


def _admin_target(directory: Path) -> AdminTarget:
    clock = FakeClock()
    store = migrated_store(directory / "baton.db", Policy())
    # No per-client rate limit: the run's hundreds of calls all come from one client.
    config = Settings(issuer=ISSUER, policy=Policy(), rate_limit_client=0)
    app = create_app(config, store, clock)
    caller = register_client(store, scope=EVERY_SCOPE, name="fuzzing admin app")
    register_user(store, "alice")
    anyio.run(lambda: store.create_user("fuzz-root", "x", 0, admin=True))
    http = TestClient(app, base_url=ISSUER, follow_redirects=False)
    answer = http.post(
        "/token", data={"grant_type": "client_credentials", "scope": EVERY_SCOPE}, auth=caller.basic
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return AdminTarget(app, http, store, schema, caller, token)


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AdminTarget]:
    # Argon2id with the cheapest parameters: passwords set by the fuzz cost a millisecond each.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(api_records, "hash_password", cheap.hash)
    yield _admin_target(tmp_path)
    schemathesis_asgi.shutdown_lifespans()


def _admin_operations(target: AdminTarget) -> list[Any]:
    found = []
    for result in target.schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(PREFIX):
            found.append(operation)
    return found


def _run(target: AdminTarget, operation: Any) -> None:
    target.replenish(operation.path)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy())
    def exercise(case: schemathesis.Case[Any]) -> None:
        kwargs = target.prepare(case)
        response = case.call(**kwargs)
        target.record(case, response.status_code)
        case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    try:
        exercise()
    except (Exception, BaseExceptionGroup) as exc:  # one failure must not hide others
        target.report.failures.append(_failure_text(operation.label, exc))


def test_every_admin_operation_answers_as_documented(target: AdminTarget) -> None:
    operations = _admin_operations(target)
    labels = {op.label for op in operations}
    # Every admin route of the table is in the document, and fuzzed.
    assert {"GET /admin/api/v1/users", "GET /admin/api/v1/audit/export"} <= labels
    assert len(labels) >= 20
    for operation in operations:
        _run(target, operation)
    report = target.report
    assert report.failures == [], report.summary()
    assert report.server_errors == 0, report.summary()
    # Past authorization: the handlers answered, successes included.
    ok = {label for (label, status), n in report.by_status.items() if n and status < 300}
    for label in (
        "GET /admin/api/v1/users",
        "GET /admin/api/v1/users/{username}",
        "GET /admin/api/v1/grants",
        "GET /admin/api/v1/audit",
        "GET /admin/api/v1/audit/export",
        "GET /admin/api/v1/security-events",
        "GET /admin/api/v1/consents",
    ):
        assert label in ok, report.summary()
    statuses = {status for (_label, status), n in report.by_status.items() if n}
    assert 401 not in statuses and 403 not in statuses, report.summary()
    # The caller survived the destructive calls: its client is enabled and its token live.
    caller = anyio.run(target.store.get_client, target.caller.id)
    assert caller is not None and caller.disabled_at is None
    root = anyio.run(target.store.get_user, "fuzz-root")
    assert root is not None and root.is_admin and root.disabled_at is None


def test_the_checks_catch_a_wrong_admin_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness can fail: a document saying a user's `username` is an integer is caught by
    the response-schema check of `GET /users/{username}`."""
    monkeypatch.setitem(api_records._USER["properties"], "username", {"type": "integer"})
    target = _admin_target(tmp_path)
    try:
        (operation,) = [
            op for op in _admin_operations(target) if op.label == f"GET {PREFIX}/users/{{username}}"
        ]
        _run(target, operation)
    finally:
        schemathesis_asgi.shutdown_lifespans()
    assert any("username" in failure for failure in target.report.failures), target.report.summary()
