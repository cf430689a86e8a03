"""Each route is declared once (`baton.server.routes`): the app serves exactly the table's routes,
the OpenAPI document describes every documented one, the metadata's URLs are routes of the app,
the session-free paths and the fast path's routes are the table's machine endpoints, and the
table of endpoints of docs/endpoints.md is the generated one (a stale table fails, naming the
command)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from baton.config import Settings
from baton.server.endpoints.openapi import openapi_document
from baton.server.fastpath.machine import MachineEndpoints
from baton.server.observability.middleware import Observe
from baton.server.routes import (
    README_END,
    README_START,
    TABLE,
    main,
    openapi_endpoint,
    with_readme_table,
)
from baton.server.routing import Kind, NotAllowed, Table, endpoint
from baton.server.runtime.sessions import SessionMiddleware
from tests.support import running_app

ENDPOINTS_PAGE = Path(__file__).parents[2] / "docs" / "endpoints.md"


def served(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path, method) of every route, those under a Mount included (HEAD is GET's)."""
    for route in routes:
        if isinstance(route, Mount):
            yield from served(route.routes, prefix + route.path)
        elif isinstance(route, Route) and not isinstance(route, NotAllowed):  # 405s only
            for method in route.methods or ():
                if method != "HEAD":
                    yield prefix + route.path, method


def declared(table: Table) -> set[tuple[str, str]]:
    admin = {(table.admin_prefix + e.path, m) for e in table.admin for m in e.methods}
    return {(e.path, m) for e in table.endpoints for m in e.methods} | admin


def test_the_app_serves_the_table_and_the_document_describes_it(tmp_path: Path) -> None:
    with running_app(tmp_path, metrics_public=True) as (http, _store, _clock):
        app = cast(Starlette, http.app)
        document = http.get("/openapi.json").json()
    # /metrics is the observability room's, served when configured, and documented then.
    assert set(served(app.routes)) == declared(TABLE) | {("/metrics", "GET")}
    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    documented = {(e.path, m) for e in TABLE.endpoints if e.documented for m in e.methods}
    assert described == documented | {("/metrics", "GET")}
    # Only the console is left out on purpose.
    assert all(e.documented for e in TABLE.endpoints)
    assert not any(e.documented for e in TABLE.admin)


def test_the_metadata_urls_are_routes_of_the_app(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        app = cast(Starlette, http.app)
        metadata = http.get("/.well-known/oauth-authorization-server").json()
    paths = {path for path, _method in served(app.routes)}
    urls = {name: value for name, value in metadata.items() if name in TABLE.metadata_paths()}
    assert set(urls) == {
        "authorization_endpoint",
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
        "end_session_endpoint",  # OpenID Connect RP-Initiated Logout 1.0 §2.1
        "client_policy_endpoint",  # a client's policy and its scheduled change (issue 28)
    }
    for url in urls.values():
        assert url.startswith(metadata["issuer"] + "/")
        assert urlsplit(url).path in paths


def test_with_openid_connect_on_every_metadata_member_is_advertised(tmp_path: Path) -> None:
    """The OpenID endpoints (/userinfo, and /session/end once routed) join the others, and
    /register while registration is on."""
    kek = "correct horse battery staple, 32+ chars"
    with running_app(tmp_path, key_encryption_key=kek, registration="open") as running:
        app = cast(Starlette, running[0].app)
        metadata = running[0].get("/.well-known/oauth-authorization-server").json()
    paths = {path for path, _method in served(app.routes)}
    urls = {name: value for name, value in metadata.items() if name in TABLE.metadata_paths()}
    assert set(urls) == set(TABLE.metadata_paths()) >= {"userinfo_endpoint", "jwks_uri"}
    for url in urls.values():
        assert urlsplit(url).path in paths


def _middleware_kwargs(app: Starlette, cls: type) -> dict[str, object]:
    (found,) = [m for m in app.user_middleware if cast(object, m.cls) is cls]
    return dict(found.kwargs)


def test_the_machine_endpoints_skip_the_session_and_their_posts_take_the_fast_path(
    tmp_path: Path,
) -> None:
    machine = {e.path for e in TABLE.endpoints if e.kind is Kind.MACHINE and "{" not in e.path}
    # The admin API's exact paths (`/admin/api/v1/clients`) skip the session too, never fast.
    exact_admin = {p for p in machine if p.startswith("/admin/api/v1/")}
    assert machine - exact_admin == {
        "/token",
        "/introspect",
        "/revoke",
        "/register",
        "/revocations",
        "/revocations/stream",
        "/userinfo",
        "/token-use",  # issue 28: resource servers' reports
        "/client-policy",  # issue 28: a client's policy
    }
    # The admin API: machine endpoints with path parameters, skipped by prefix.
    # and RFC 7592's /register/{client_id}.
    admin_api = {e.path for e in TABLE.endpoints if e.kind is Kind.MACHINE} - machine | exact_admin
    admin_api -= {"/register/{client_id}"}
    assert admin_api and all(path.startswith("/admin/api/v1/") for path in admin_api)
    probes = {e.path for e in TABLE.endpoints if e.kind is Kind.PROBE}
    assert probes == {"/healthz", "/readyz"}
    with running_app(tmp_path) as (http, _store, _clock):
        app = cast(Starlette, http.app)
        sessions = _middleware_kwargs(app, SessionMiddleware)
        fast = _middleware_kwargs(app, MachineEndpoints)
        # Machine endpoints and probes skip the session; only the probes skip the access log.
        assert sessions["sessionless"] == machine | probes
        assert sessions["sessionless_prefixes"] == (
            "/admin/api/v1/clients/",
            "/admin/api/v1/consent-challenges/",
            "/admin/api/v1/consents/",
            "/admin/api/v1/grants/",
            "/admin/api/v1/login-challenges/",
            "/admin/api/v1/subjects/",
            "/admin/api/v1/users/",
            "/register/",
        )
        assert _middleware_kwargs(app, Observe)["unlogged"] == probes
        fast_routes = cast(list[Route], fast["routes"])
        # Their POSTs only: GET /userinfo goes the router's way.
        assert {(route.path, frozenset(route.methods or ())) for route in fast_routes} == {
            (path, frozenset({"POST"}))
            for path in ("/token", "/introspect", "/revoke", "/register", "/userinfo", "/token-use")
        }
        # The very objects the router holds: a 405 and the metrics' route label stay the same.
        assert all(any(route is r for r in app.routes) for route in fast_routes)
    (tmp_path / "off").mkdir()
    with running_app(tmp_path / "off", fast_paths=False) as (http, _store, _clock):
        app = cast(Starlette, http.app)
        assert not [m for m in app.user_middleware if cast(object, m.cls) is MachineEndpoints]


def test_a_route_is_declared_once_and_documented_unless_said_otherwise() -> None:
    twice = endpoint(
        "/openapi.json", "GET", openapi_endpoint, openapi={"responses": {}}, summary="Again"
    )
    with pytest.raises(ValueError, match="declared twice"):
        Table((*TABLE.endpoints, twice), TABLE.admin)
    with pytest.raises(ValueError, match="needs its OpenAPI operation"):
        endpoint("/new", "GET", openapi_endpoint, Kind.SESSION)
    with pytest.raises(ValueError, match="needs its OpenAPI operation and summary"):
        endpoint("/new", "GET", openapi_endpoint, openapi={"responses": {}})


def test_the_summary_is_written_once_for_the_document_and_the_docs() -> None:
    paths = openapi_document(Settings(), TABLE)["paths"]
    rows = TABLE.readme_table().splitlines()
    for e in TABLE.endpoints:
        assert e.summary is not None
        for method in e.methods:
            assert paths[e.path][method.lower()]["summary"] == e.summary
        (row,) = [r for r in rows if r.startswith(f"| `{'/'.join(sorted(e.methods))} {e.path}` |")]
        assert e.summary in row


def test_the_docs_endpoints_table_is_the_generated_one() -> None:
    page = ENDPOINTS_PAGE.read_text()
    table = page.split(README_START, 1)[1].split(README_END, 1)[0]
    assert table.strip() == TABLE.readme_table().strip(), (
        "docs/endpoints.md's endpoints table is stale: run `.venv/bin/python -m "
        "baton.server.routes readme` from the repository root"
    )


def test_the_generator_rewrites_only_the_endpoints_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = f"# Title\n\n{README_START}\n| old |\n{README_END}\n\nafter\n"
    path = tmp_path / "README.md"
    path.write_text(stale)
    assert main(["readme", str(path)]) == 0
    assert path.read_text() == with_readme_table(stale)
    assert path.read_text() == (
        f"# Title\n\n{README_START}\n{TABLE.readme_table()}{README_END}\n\nafter\n"
    )
    assert main(["readme", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("up to date")
    assert main(["nonsense"]) == 2
    path.write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        main(["readme", str(path)])


def test_the_fast_path_takes_only_the_post_of_a_machine_path_with_a_get_too() -> None:
    """/userinfo is a machine path with GET and POST endpoints: the fast path, which answers
    POSTs only (and refuses any other route), gets the POST route alone."""
    get = endpoint("/m", "GET", openapi_endpoint, Kind.MACHINE, openapi={}, summary="get")
    post = endpoint("/m", "POST", openapi_endpoint, Kind.MACHINE, openapi={}, summary="post")
    table = Table((get, post), ())
    routes = table.starlette_routes()
    fast = table.fast_routes(routes)
    assert [(route.path, route.methods) for route in fast] == [("/m", {"POST"})]
    assert table.sessionless() == {"/m"}
