"""A pytest plugin that turns PostgreSQL's native paths off (`baton.store.sql.native`) for a
whole run, so the suite can be run both ways: `pytest -p tests.store.native_off ...`. (The
server's `Settings.fast_paths` reaches the store only through `SQLStore.open`; the suite's
stores open with the default.)"""

from __future__ import annotations

from baton.store.sql import native


def _none(runner: object) -> None:
    return None


native.for_runner = _none
