"""The console's list pages answer any query string with a page or a 400, never a 500 (issue 21,
info): `?before=` with a huge integer used to overflow the database's integer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from baton.store.sql import SQLStore
from tests.server.test_console import admin_session, make_admin
from tests.support import running_app

PAGES = {
    "/admin/events": ["before", "kind"],
    "/admin/audit": ["before"],
    "/admin/clients": ["page"],
    "/admin/grants": ["after", "client", "user", "status"],
}
HUGE = ["9" * 30, str(2**63), str(-(2**63) - 1), "-1", "1e400", "0x10", "١٢", "1_000", "\x00"]
values = st.one_of(
    st.sampled_from(HUGE),
    st.integers().map(str),
    st.text(max_size=30),
    st.builds(lambda a, b: f"{a}:{b}", st.integers().map(str), st.text(max_size=10)),
)


def check(http: TestClient, path: str, params: dict[str, str]) -> None:
    response = http.get(path, params=params)
    assert response.status_code in (200, 400), (path, params, response.status_code)


@pytest.mark.parametrize("path", sorted(PAGES))
def test_huge_integers_get_a_page_or_a_400(http: TestClient, store: SQLStore, path: str) -> None:
    make_admin(store)
    admin_session(http)
    for name in PAGES[path]:
        for value in HUGE:
            check(http, path, {name: value})


def test_any_query_string_gets_a_page_or_a_400(tmp_path: Path, database: Path | str) -> None:
    with running_app(database) as (http, store, _clock):
        make_admin(store)
        admin_session(http)

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            path=st.sampled_from(sorted(PAGES)),
            picked=st.dictionaries(
                st.sampled_from(sorted({n for v in PAGES.values() for n in v})), values
            ),
        )
        def any_params(path: str, picked: dict[str, str]) -> None:
            check(http, path, picked)

        any_params()
