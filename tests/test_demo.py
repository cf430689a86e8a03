"""`baton demo` runs its whole story to the end and tells it right."""

from __future__ import annotations

import io
import re

from click.testing import CliRunner
from rich.console import Console

from baton import demo
from baton.cli import main
from baton.core.timeline import Kind


def test_the_demo_tells_the_story_and_its_timeline() -> None:
    output = io.StringIO()
    told = demo.run(Console(file=output, width=140), wait=False)
    text = output.getvalue()
    assert "the same gen 2 pair again" in text  # the lost response, recovered by the replay
    assert "reuse detected" in text
    # The server has stopped: no address or password is offered as if it could be used.
    assert told.base_url not in text and told.admin_password not in text
    assert "server has stopped" in text
    # The reuse's detail names its times as dates, never as Unix seconds.
    assert re.search(r"exchanged at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    assert not re.search(r"exchanged at \d{9}", text)
    # The timeline: four pairs, each exchanged one dying when its leeway ends, the last with
    # the family when the stolen gen 1 came back.
    bars = told.timeline.bars
    assert [b.generation for b in bars] == [0, 1, 2, 3]
    assert [b.refresh.cause for b in bars if b.refresh][:3] == [
        "leeway ended after the exchange"
    ] * 3
    assert bars[3].refresh is not None and bars[3].refresh.cause == "grant revoked: reuse detected"
    assert [m.kind for m in bars[1].marks] == [Kind.EXCHANGE, Kind.RETRY, Kind.REUSE]
    assert told.timeline.status == "revoked (reuse)"
    kinds = [kind for _, kind, _ in told.events]
    assert sorted(kinds) == ["leeway_retry", "login_lockout", "refresh_token_reuse"]
    # No token or code is ever printed.
    assert "bat_rt_" not in text and "bat_at_" not in text and "bat_ac_" not in text


def test_baton_demo_exit_runs_to_completion() -> None:
    result = CliRunner().invoke(main, ["demo", "--exit"])
    assert result.exit_code == 0, result.output
    assert "Token family of grant" in result.output
    assert "refresh_token_reuse" in result.output
    assert "sign in as admin" not in result.output and "http://" not in result.output
    assert "server has stopped" in result.output


def test_an_open_demo_prints_where_its_console_is() -> None:
    output = io.StringIO()
    with demo.story(Console(file=output, width=140)) as told:
        text = output.getvalue()
        assert f"{told.base_url}/admin/grants/{told.grant_id}" in text
        assert f"sign in as admin with the password {told.admin_password}" in text
