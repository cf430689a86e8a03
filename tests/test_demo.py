"""`baton demo` runs its whole story to the end and tells it right."""

from __future__ import annotations

import io

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
    assert f"/admin/grants/{told.grant_id}" in text
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
    assert "sign in as admin with the password" in result.output
