"""Runs several `baton` command lines in one process (each `baton` process spends about a second
importing): a JSON list of {"args": [...], "stdin": "..." or null} on stdin, a JSON list of
{"code": exit status, "stdout": ..., "stderr": ...} on stdout. The commands are the real CLI's,
invoked through click as the console script does."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from baton.cli import main


def run() -> None:
    calls = json.load(sys.stdin)
    runner = CliRunner()
    results = []
    for call in calls:
        result = runner.invoke(main, call["args"], input=call.get("stdin"), catch_exceptions=True)
        error = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            error += f"\n{type(result.exception).__name__}: {result.exception}"
        results.append({"code": result.exit_code, "stdout": result.stdout, "stderr": error})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    run()
