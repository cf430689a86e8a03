"""Tests of the benchmark harness in bench/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    """A script of bench/ imported as a module: bench/ is not a package, so its folder is on
    `sys.path` for the import (the scripts find each other there themselves afterwards)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))
