"""Structured logs: one JSON object per line (or a readable line for development).

Every record goes through the standard `logging` module, so uvicorn's records, Baton's older
`logging.getLogger("baton")` calls and structlog's events share one handler and one format; the
structlog events keep their fields. Each line carries the id of the request it belongs to, read
from a context variable that `baton.server.observe` sets per request.

What is never logged: tokens, codes, client secrets, passwords, the Authorization header and the
query string. Nothing here filters them out; the callers never hand them over (the test session
scans every log line of the run for them).
"""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

FORMATS = ("json", "console")

REQUEST_ID: ContextVar[str | None] = ContextVar("baton_request_id", default=None)
"""The id of the request being answered in this task (None outside a request)."""


def add_request_id(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def add_process_id(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """With `--workers N`, which process wrote the line."""
    event["pid"] = os.getpid()
    return event


_SHARED: list[Processor] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_request_id,
    add_process_id,
]


def configure_structlog() -> None:
    """Routes structlog events into `logging` (idempotent; every process calls it once).

    Level filtering is the standard library's, so `--log-level` and a test's `caplog` apply to
    structlog events too; the rendering is the handler's formatter (see `formatter`).
    """
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def formatter(renderer: str = "json") -> logging.Formatter:
    """A `logging` formatter for every record, structlog's and plain ones alike.

    Named in the `logging.config.dictConfig` that `baton serve` hands to uvicorn, which applies
    it in each worker process.
    """
    configure_structlog()
    final: Processor
    if renderer == "json":
        final = structlog.processors.JSONRenderer()
    elif renderer == "console":
        final = structlog.dev.ConsoleRenderer(colors=False)
    else:
        raise ValueError(f"unknown log format {renderer!r}: use one of {', '.join(FORMATS)}")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, final],
    )


def get_logger(name: str) -> Any:
    """A structlog logger over the standard logger `name`."""
    configure_structlog()
    return structlog.stdlib.get_logger(name)


def dict_config(level: str, renderer: str) -> dict[str, Any]:
    """uvicorn's and Baton's records, one format, in every worker process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"baton": {"()": "baton.logs.formatter", "renderer": renderer}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "baton"}},
        "loggers": {
            "baton": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "alembic": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
