"""`X-Request-ID` (issue 21, info): taken only when short and of a safe alphabet, otherwise a
fresh one; a hostile value never reaches a log line, whatever bytes it holds."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from baton.server.observability.middleware import incoming_request_id
from tests.server.test_observe import json_lines, parsed
from tests.support import running_app

SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
HOSTILE = [
    b'x", "level": "critical',  # a forged JSON field
    b"line\nbreak",
    b"\x1b[31mred\x1b[0m",  # terminal escapes for `--log-format console`
    b"caf\xc3\xa9",
    b"a" * 65,
    b"%0d%0aSet-Cookie:x=1",
    b"",
]


@given(value=st.binary(max_size=100))
def test_an_incoming_id_is_kept_only_when_safe(value: bytes) -> None:
    kept = incoming_request_id([(b"x-request-id", value)])
    if kept is not None:
        assert SAFE.fullmatch(kept) and kept.encode() == value


def test_a_hostile_request_id_never_reaches_a_log_line(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock), json_lines() as out:
        answers = [http.get("/jwks.json", headers={b"X-Request-ID": value}) for value in HOSTILE]
        # Two headers: the first decides; a hostile second one is ignored.
        both = http.get(
            "/jwks.json", headers=[(b"X-Request-ID", b"edge-1"), (b"X-Request-ID", HOSTILE[0])]
        )
    assert both.headers["x-request-id"] == "edge-1"
    lines = parsed(out)
    ids = [line["request_id"] for line in lines if line["logger"] == "baton.access"]
    assert len(ids) == len(HOSTILE) + 1
    for line_id in ids:
        assert SAFE.fullmatch(line_id)
    text = out.getvalue()
    for value in HOSTILE[:-1]:
        assert value.decode("latin-1") not in text
    for answer in answers:
        assert SAFE.fullmatch(answer.headers["x-request-id"])
        assert len(answer.headers["x-request-id"]) == 16  # a fresh random id
