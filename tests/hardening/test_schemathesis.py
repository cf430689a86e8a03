"""Schemathesis drives the in-process app from its own `/openapi.json`: every operation (but the
admin API's, which `test_admin_schemathesis.py` drives with an admin app's token), then
scenarios along the document's links (a token response's refresh token refreshed, retried,
revoked and introspected). Zero 5xx and zero schema violations; `make fuzz` runs the same with
far more examples (`bench/fuzz.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from baton.server.endpoints import openapi
from baton.server.endpoints.openapi import openapi_document
from baton.server.routes import TABLE
from baton.server.routing import NotAllowed
from tests.hardening.api_fuzz import Report, fuzz_target, run_operations, run_stateful
from tests.support import running_app

EXAMPLES = 25  # per operation
SCENARIOS = 30


def test_the_served_document_is_valid_openapi_and_lists_every_route(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        served = http.get("/openapi.json")
        assert served.status_code == 200
        document = served.json()
        app = cast(Starlette, http.app)
        assert document == openapi_document(app.state.baton.settings, TABLE)
        schema = schemathesis.openapi.from_dict(document)
        schema.validate()
        routes = {
            (route.path, method.lower())
            for route in app.routes
            # The admin API's 405 answers (`NotAllowed`) serve no operation of their own.
            if isinstance(route, Route) and not isinstance(route, NotAllowed)
            for method in route.methods or ()
            if method != "HEAD"
        }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert described == routes
    assert document["servers"] == [{"url": "http://baton.test"}]


def _assert_clean(report: Report) -> None:
    assert report.failures == [], report.summary()
    assert report.server_errors == 0, report.summary()


def _statuses(report: Report, label: str) -> set[int]:
    return {status for (op, status), n in report.by_status.items() if op == label and n}


def test_every_operation_answers_as_documented(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        run_operations(target, EXAMPLES)
        report = target.report
    _assert_clean(report)
    # Not only refusals: the credentials and codes supplied get the endpoints to succeed too.
    labels = ("POST /token", "POST /revoke", "POST /introspect", "GET /revocations")
    for label in (*labels, "GET /userinfo", "POST /userinfo"):
        assert 200 in _statuses(report, label), report.summary()
    assert {400, 401} <= _statuses(report, "POST /token"), report.summary()
    assert 302 in _statuses(report, "GET /authorize"), report.summary()


def test_stateful_scenarios_along_the_links(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        run_stateful(target, SCENARIOS)
        report = target.report
    _assert_clean(report)
    assert report.scenarios >= SCENARIOS
    # The links were followed: tokens issued by /token came back to /revoke and /introspect.
    assert 200 in _statuses(report, "POST /revoke"), report.summary()
    assert 200 in _statuses(report, "POST /introspect"), report.summary()


def test_the_checks_catch_a_wrong_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness can fail: a document that forgets `refresh_token_expires_in` and closes the
    token response is caught by the response-schema check."""
    wrong = dict(openapi.SCHEMAS["TokenResponse"], additionalProperties=False)
    wrong["properties"] = {
        k: v for k, v in wrong["properties"].items() if k != "refresh_token_expires_in"
    }
    wrong.pop("dependentRequired")
    monkeypatch.setitem(openapi.SCHEMAS, "TokenResponse", wrong)
    with fuzz_target(tmp_path) as target:
        run_stateful(target, 10)
        report = target.report
    assert any("refresh_token_expires_in" in f for f in report.failures), report.summary()
