"""The exact bytes of a log line, in both formats: plain records and structlog events, fields of
every JSON type, values JSON cannot hold, the request id, and exceptions either way. The lines are
what operators parse, so a change of rendering (or of the library behind it) shows here."""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from baton.logs import REQUEST_ID, formatter, get_logger

CREATED = 1767225600.25  # 2026-01-01T00:00:00.250Z
STAMP = "2026-01-01T00:00:00.250Z"


class _Fixed(logging.Filter):
    """A fake clock and process id for every record the handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.created = CREATED
        record.process = 42
        return True


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


class _OwnForm:
    def __structlog__(self) -> dict[str, int]:
        return {"own": 1}


@contextmanager
def _lines(renderer: str) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(renderer))
    handler.addFilter(_Fixed())
    logger = logging.getLogger("baton.golden")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _fail() -> None:
    raise ZeroDivisionError("division by zero")


def _write_every_kind(fields: dict[str, Any]) -> str:
    """Logs a plain record, an event with `fields` inside a request, and a failure both ways;
    returns the traceback text the two failures carry."""
    plain = logging.getLogger("baton.golden")
    plain.warning("plain %s é", "x")
    events = get_logger("baton.golden")
    token = REQUEST_ID.set("req-1")
    try:
        events.info("event", **fields)
    finally:
        REQUEST_ID.reset(token)
    try:
        _fail()
    except ZeroDivisionError as exc:
        events.exception("failed", n=2)
        plain.exception("plain failed")
        return "".join(traceback.format_exception(exc)).rstrip("\n")
    raise AssertionError("unreachable")


def test_json_lines_are_byte_for_byte_what_they_were() -> None:
    fields = {
        "n": 1,
        "f": 1.5,
        "none": None,
        "flag": True,
        "opaque": _Opaque(),
        "own": _OwnForm(),
        "text": 'ü"q',
        "items": [1, "a"],
    }
    with _lines("json") as out:
        trace = _write_every_kind(fields)
    quoted = json.dumps(trace)
    head = f'"timestamp": "{STAMP}"'
    assert out.getvalue() == (
        f'{{"event": "plain x \\u00e9", {head}, "level": "warning", "logger": "baton.golden",'
        ' "pid": 42}\n'
        '{"n": 1, "f": 1.5, "none": null, "flag": true, "opaque": "<opaque>", "own": {"own": 1},'
        ' "text": "\\u00fc\\"q", "items": [1, "a"], "event": "event",'
        f' {head}, "level": "info", "logger": "baton.golden", "pid": 42, "request_id": "req-1"}}\n'
        f'{{"n": 2, "event": "failed", "exception": {quoted}, {head}, "level": "error",'
        ' "logger": "baton.golden", "pid": 42}\n'
        f'{{"event": "plain failed", {head}, "level": "error", "logger": "baton.golden",'
        f' "pid": 42, "exception": {quoted}}}\n'
    )


def test_console_lines_are_byte_for_byte_what_they_were() -> None:
    fields = {"n": 1, "none": None, "opaque": _Opaque(), "text": 'ü"q', "items": [1, "a"]}
    with _lines("console") as out:
        trace = _write_every_kind(fields)
    assert out.getvalue() == (
        f"{STAMP} [warning  ] plain x é                      [baton.golden] pid=42\n"
        f"{STAMP} [info     ] event                          [baton.golden] items=[1, 'a'] n=1"
        " none=None opaque=<opaque> pid=42 request_id=req-1 text='ü\"q'\n"
        f"{STAMP} [error    ] failed                         [baton.golden] n=2 pid=42\n"
        f"{trace}\n"
        f"{STAMP} [error    ] plain failed                   [baton.golden] pid=42\n"
        f"{trace}\n"
    )
