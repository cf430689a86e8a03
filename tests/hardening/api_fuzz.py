"""Schemathesis against the in-process app, driven by `/openapi.json`: shared by the bounded run
in the test suite (`test_schemathesis.py`) and the long one behind `make fuzz` (`bench/fuzz.py`).

Two phases:

- **operations**: every operation of the document but the admin API's (fuzzed with an admin
  app's token by `test_admin_schemathesis.py`), each with `examples` generated requests
  (positive data: valid by the schema, which is loose enough to cover garbage tokens, bad
  scopes, repeated credentials and the like);
- **stateful**: schemathesis's state machine follows the document's links from a token response
  to the refresh, revocation and introspection of its tokens (and the retry of the refresh), for
  `scenarios` scenarios.

Each answer goes through these checks: no 5xx, a documented status, a documented content type,
the documented headers present and valid, the body valid against the response schema.

Schemathesis cannot sign in through the login page, so two things are supplied from outside:
credentials (an `Authorization: Basic` header of a confidential client that is also a resource
server, on most requests; the rest keep what schemathesis generated, including nothing), and
authorization codes: a `/token` request for `grant_type=authorization_code` gets, most of the
time, a real code saved for it in the store (with its redirect URI and PKCE verifier), so that
the scenarios reach refresh tokens; a `/userinfo` request gets, most of the time, a live access
token of an OpenID grant (redeemed from such a code in process). The clock is a FakeClock that
moves one second per request, with a five-second leeway, so scenarios cross the leeway: retries
become reuse.
"""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import run_state_machine_as_test
from itsdangerous import TimestampSigner
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.stateful.state_machine import APIStateMachine
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from baton.config import Settings
from baton.core import pkce
from baton.core.clock import FakeClock
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.tokens import TokenKind, mint, random_base62
from baton.server.admin.api import PREFIX
from baton.server.app import create_app
from baton.server.runtime.sessions import COOKIE, session_digest
from baton.store.base import NewCode
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    migrated_store,
    register_client,
    register_user,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
LIFETIMES = Lifetimes(access_ttl=30, refresh_idle_ttl=600, refresh_absolute_ttl=3600, leeway=5)
_BROWSER_PAGES = ("/authorize", "/login", "/logout")
# OpenID Connect scopes too, so that /userinfo answers 200; `offline_access`, or an OpenID grant
# gets no refresh token (OIDC Core §11) and the rotation would go unfuzzed.
SCOPE = "openid profile email offline_access read write"
KEK = "the fuzzing key-encryption key, 32+ characters"
STREAM_SECONDS = 0.3  # how long an event stream is read before it is cut (it never ends)


@dataclass
class Report:
    requests: int = 0
    by_status: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    scenarios: int = 0

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.by_status.items() if status >= 500)

    def summary(self) -> str:
        lines = [f"requests: {self.requests}, 5xx: {self.server_errors}"]
        lines += [f"failures: {len(self.failures)}", *self.failures]
        per_op: dict[str, Counter[int]] = {}
        for (label, status), n in sorted(self.by_status.items()):
            per_op.setdefault(label, Counter())[status] += n
        for label, statuses in per_op.items():
            shown = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            lines.append(f"  {label:<45} {shown}")
        return "\n".join(lines)


class Target:
    """The app, its store and clock, and what a request needs to get past authentication."""

    def __init__(self, directory: Path, retry: RetryPolicy = RetryPolicy.REPLAY) -> None:
        self.clock = FakeClock()
        policy = Policy(LIFETIMES, retry)
        self.store: SQLStore = migrated_store(directory / "baton.db", policy)
        register_user(self.store, "alice")
        user = anyio.run(self.store.get_user, "alice")
        assert user is not None
        self.user_id = user.id
        self.client: RegisteredClient = register_client(
            self.store, resource_server=True, name="fuzzed app", scope=SCOPE
        )
        # OpenID Connect on (a key-encryption key), so that /userinfo answers too.
        self.settings = Settings(issuer="http://testserver", policy=policy, key_encryption_key=KEK)
        self.app = create_app(self.settings, self.store, self.clock)
        # A signed-in session, held server-side as /login would make it (for the whole run).
        self.session_id = random_base62(43)
        anyio.run(
            self.store.start_session, session_digest(self.session_id), self.user_id, 0, 2**40, None
        )
        self.schema = schemathesis.openapi.from_asgi("/openapi.json", self.app)
        self.report = Report()
        self._calls = 0

    @property
    def authorization(self) -> str:
        raw = f"{self.client.id}:{self.client.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def real_code(self) -> tuple[str, str]:
        """A fresh authorization code for the client, as /authorize would have saved it, and
        its PKCE verifier."""
        code = mint(TokenKind.CODE)
        verifier = secrets.token_urlsafe(48)
        now = self.clock.now()
        record = NewCode(
            digest=code.digest,
            client_id=self.client.id,
            user_id=self.user_id,
            redirect_uri=REDIRECT_URI,
            scope=SCOPE,
            code_challenge=pkce.s256(verifier),
            created_at=now,
            expires_at=now + 60,
        )
        anyio.run(self.store.save_code, record)
        return code.plaintext, verifier

    def real_access_token(self) -> str:
        """A live access token of an OpenID grant: a real code redeemed at /token (in process,
        outside the report), for /userinfo to answer 200 too."""
        code, verifier = self.real_code()
        answer = TestClient(self.app).post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            headers={"Authorization": self.authorization},
        )
        token: str = answer.json()["access_token"]
        return token

    def prepare(self, case: schemathesis.Case[Any], *, always_authenticate: bool) -> dict[str, Any]:
        """Supplies credentials and codes (see the module docstring); the call's kwargs."""
        self._calls += 1
        body = case.body
        if case.operation.path == "/userinfo" and self._calls % 3 != 0:
            # A real bearer token, most of the time: in the header, or in a POST's form.
            token = self.real_access_token()
            if isinstance(body, dict):
                body["access_token"] = token
                return {}
            return {"headers": {"Authorization": f"Bearer {token}"}}
        if (
            case.operation.path == "/token"
            and isinstance(body, dict)
            and body.get("grant_type") == "authorization_code"
            and self._calls % 4 != 0
        ):
            code, verifier = self.real_code()
            body.update(code=code, redirect_uri=REDIRECT_URI, code_verifier=verifier)
            body.pop("client_secret", None)
            body.pop("client_id", None)
        kwargs: dict[str, Any] = {}
        if case.operation.path in _BROWSER_PAGES and self._calls % 5 != 0:
            kwargs["cookies"] = self.browser(case)
        if always_authenticate or self._calls % 5 != 0:
            kwargs["headers"] = {"Authorization": self.authorization}
            if isinstance(body, dict):
                body.pop("client_secret", None)  # Basic and post together is a sure 400
                if "client_id" in body and self._calls % 7 != 0:
                    body["client_id"] = self.client.id  # allowed if equal to Basic's
        if case.operation.path == "/revocations/stream":
            kwargs["timeout"] = STREAM_SECONDS
        return kwargs

    def browser(self, case: schemathesis.Case[Any]) -> dict[str, str]:
        """A signed-in session (signed out for /login) whose CSRF token the form carries, and
        the request naming the real client and its redirect URI, most of the time."""
        csrf = "csrf-of-the-fuzzing-session"
        session: dict[str, Any] = {"csrf": csrf}
        if case.operation.path != "/login":
            session["sid"] = self.session_id
        signer: TimestampSigner = self.app.state.session_signer
        cookie = signer.sign(base64.b64encode(json.dumps(session).encode())).decode()
        for params in (case.query, case.body):
            if not isinstance(params, dict):
                continue
            if "csrf" in params:
                params["csrf"] = csrf
            if "client_id" in params or self._calls % 3 == 0:
                params["client_id"] = self.client.id
            if "redirect_uri" in params and self._calls % 2 == 0:
                params["redirect_uri"] = REDIRECT_URI
        return {COOKIE: cookie}

    def restart_counting(self) -> None:
        self._calls = 0

    def record(self, case: schemathesis.Case[Any], status: int) -> None:
        self.report.requests += 1
        self.report.by_status[(case.operation.label, status)] += 1
        self.clock.advance(1)

    def close(self) -> None:
        schemathesis_asgi.shutdown_lifespans()


def _failure_text(label: str, exc: BaseException) -> str:
    if isinstance(exc, FailureGroup):
        parts = [f"{f.title}: {f.message}" for f in exc.exceptions]
        return f"{label}: " + " | ".join(parts)
    return f"{label}: {type(exc).__name__}: {exc}"


def run_operations(target: Target, examples: int, seed: int | None = None) -> None:
    """Each operation on its own, `examples` requests each; not the admin API's, which need a
    bearer token of an admin app (`test_admin_schemathesis.py` fuzzes them with one)."""
    for result in target.schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        label = operation.label
        if operation.path.startswith(PREFIX + "/"):
            continue

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=seed is None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case[Any]) -> None:
            kwargs = target.prepare(case, always_authenticate=False)
            response = case.call(**kwargs)
            target.record(case, response.status_code)
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

        if seed is not None:
            exercise = hypothesis_seed(seed)(exercise)
        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # one failure must not hide others
            target.report.failures.append(_failure_text(label, exc))


def run_stateful(target: Target, scenarios: int, steps: int = 12, seed: int | None = None) -> None:
    """Scenarios along the links: token -> refresh (and its retry), revoke, introspect. Not the
    admin API's operations (its links, inferred from its ids and `Location` headers, would take
    the scenarios' steps, and its calls need a bearer token): `test_admin_schemathesis.py`
    fuzzes those."""
    # Nor the operations no token link leads to or from (dynamic registration, off here and so
    # 404; issue 28's policy read and resource servers' reports; all fuzzed by
    # `run_operations`): a derandomized machine spent its steps on them.
    base = (
        target.schema.exclude(path_regex=f"^{PREFIX}/")
        .exclude(path_regex="^/(client-policy|token-use|register)")
        .as_state_machine()
    )

    class Machine(base):  # type: ignore[valid-type,misc]
        def setup(self) -> None:
            # Each scenario must behave the same whenever hypothesis replays its choices, so
            # nothing it sees may depend on the scenarios before it.
            target.report.scenarios += 1
            target.restart_counting()

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return target.prepare(case, always_authenticate=True)

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
            target.record(case, response.status_code)

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case[Any],
            additional_checks: list[Any] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    machine: type[APIStateMachine] = Machine
    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=scenarios,
                stateful_step_count=steps,
                deadline=None,
                database=None,
                derandomize=seed is None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            ),
        )
    except (Exception, BaseExceptionGroup) as exc:
        target.report.failures.append(_failure_text("stateful", exc))


@contextmanager
def fuzz_target(directory: Path | None = None) -> Iterator[Target]:
    with tempfile.TemporaryDirectory(prefix="baton-fuzz-") as scratch:
        target = Target(directory or Path(scratch))
        try:
            yield target
        finally:
            target.close()
