"""Structured logs: one JSON object per line (or a readable line for development).

Every record goes through the standard `logging` module, so uvicorn's records, Baton's older
`logging.getLogger("baton")` calls and structlog's events share one handler and one format; the
structlog events keep their fields. Each line carries the id of the request it belongs to, read
from a context variable that `baton.server.observability.middleware` sets per request.

What is never logged: tokens, codes, client secrets, passwords, the Authorization header and the
query string. Nothing here filters them out; the callers never hand them over (the test session
scans every log line of the run for them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

# structlog is imported where an event is logged through it (`get_logger`, `configure_structlog`)
# or rendered for a terminal, never by the JSON formatter alone: the supervisor of `baton serve`
# only writes plain records, and does without it.

FORMATS = ("json", "console")

REQUEST_ID: ContextVar[str | None] = ContextVar("baton_request_id", default=None)
"""The id of the request being answered in this task (None outside a request)."""


def _to_logging(_logger: WrappedLogger, _method: str, event: EventDict) -> tuple[Any, ...]:
    """structlog's last step: the event dict becomes the message of a standard log record."""
    return (event,), {}


def configure_structlog() -> None:
    """Routes structlog events into `logging` (idempotent; every process calls it once).

    Level filtering is the standard library's, so `--log-level` and a test's `caplog` apply to
    structlog events too; the rendering is the handler's formatter (`formatter`). The chain is
    kept short on purpose: the access log writes a line per request.
    """
    import structlog

    if structlog.is_configured():
        return
    structlog.configure(
        processors=[structlog.processors.format_exc_info, _to_logging],
        logger_factory=_standard_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )


def _standard_logger(*args: Any) -> logging.Logger:
    return logging.getLogger(args[0] if args else "baton")


class EventFormatter(logging.Formatter):
    """Renders every record as a structlog event: a structlog event's own fields, or a plain
    record's message as `event`; then timestamp, level, logger, pid and the request id.

    Lighter than structlog's `ProcessorFormatter` (no copy of the record, no processor chain),
    because the access log runs it once per request.
    """

    def __init__(self, renderer: Callable[[Any, str, dict[str, Any]], Any]) -> None:
        super().__init__()
        self.render = renderer

    def format(self, record: logging.LogRecord) -> str:
        message = record.msg
        event = dict(message) if isinstance(message, dict) else {"event": record.getMessage()}
        event["timestamp"] = _iso(record.created)
        event["level"] = level = record.levelname.lower()
        event["logger"] = record.name
        event["pid"] = record.process
        if "request_id" not in event:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                event["request_id"] = request_id
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return str(self.render(None, level, event))


_last_second: tuple[int, str] = (-1, "")  # replaced whole, so threads never see half of it


def _iso(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the date and time of a second are formatted once."""
    global _last_second
    second = int(created)
    cached, text = _last_second
    if cached != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, text)
    return f"{text}.{int((created - second) * 1000):03d}Z"


def _json_default(value: Any) -> Any:
    """What JSON cannot hold, as structlog's JSON renderer writes it: the value's own
    `__structlog__()` form, else its repr."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


def render_json(_logger: Any, _level: str, event: dict[str, Any]) -> str:
    """One event as one line of JSON, byte for byte as `structlog.processors.JSONRenderer()`
    renders it (`json.dumps` with its fallback), without importing structlog."""
    return json.dumps(event, default=_json_default)


def formatter(renderer: str = "json") -> logging.Formatter:
    """A `logging` formatter for every record, structlog's and plain ones alike.

    Named in the `logging.config.dictConfig` that `baton serve` hands to uvicorn, which applies
    it in the supervisor and in each worker process. Events reach it from structlog once
    `get_logger` has routed them (`configure_structlog`).
    """
    if renderer == "json":
        return EventFormatter(render_json)
    if renderer == "console":
        import structlog

        return EventFormatter(structlog.dev.ConsoleRenderer(colors=False))
    raise ValueError(f"unknown log format {renderer!r}: use one of {', '.join(FORMATS)}")


def get_logger(name: str) -> Any:
    """A structlog logger over the standard logger `name`."""
    import structlog

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
            # The webhook client: its request lines name the URL, which may hold a credential.
            "httpx": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "httpcore": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
