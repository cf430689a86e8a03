"""`python -m baton.config table | readme [--check] [docs/configuration.md]`: see
`baton.config.table`."""

from __future__ import annotations

import sys

from baton.config.table import main

sys.exit(main(sys.argv[1:]))
