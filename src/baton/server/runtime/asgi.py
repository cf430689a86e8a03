"""The app factory each server process calls (`uvicorn --factory baton.server.runtime.asgi:create`).

`baton serve` resolves its options once and hands them to every worker in BATON_SERVE_CONFIG.
"""

from __future__ import annotations

import gc
import os

from starlette.applications import Starlette

from baton.config import ServeConfig
from baton.server.app import create_app
from baton.store.sql import SQLStore

CONFIG_VARIABLE = "BATON_SERVE_CONFIG"


def create() -> Starlette:
    config = ServeConfig.from_json(os.environ[CONFIG_VARIABLE])
    store = SQLStore.open(
        config.db,
        config.settings.policy,
        config.pool,
        config.sqlite,
        fast_paths=config.settings.fast_paths,
    )
    clock = None
    if config.settings.clock_offset_file is not None:
        from baton.server.runtime.rehearsal import OffsetFileClock

        clock = OffsetFileClock(config.settings.clock_offset_file)
    app = create_app(config.settings, store, clock)
    # Everything loaded so far (modules, metadata, statements) lives as long as the process:
    # moved out of the collector's sight, it no longer makes each full collection a long pause
    # in the middle of requests.
    gc.collect()
    gc.freeze()
    return app
