"""`python -m baton.cli ...`: the `baton` command (the tests and the e2e helpers run it so)."""

from __future__ import annotations

from baton.script import main

main()
