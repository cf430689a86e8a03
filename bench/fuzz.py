"""The long schemathesis run behind `make fuzz`: the in-process app, driven from its own
`/openapi.json` (the harness is `tests/hardening/api_fuzz.py`, the bounded test suite run uses
the same with fewer examples).

    .venv/bin/python bench/fuzz.py --examples 300 --scenarios 300 [--seed N]

Prints the requests per operation and status, and every failure; exits 1 on any failure or 5xx.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hardening.api_fuzz import fuzz_target, run_operations, run_stateful


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="requests per operation")
    parser.add_argument("--scenarios", type=int, default=300, help="stateful scenarios")
    parser.add_argument("--steps", type=int, default=20, help="most steps per scenario")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: fixed)")
    args = parser.parse_args()
    started = time.monotonic()
    with fuzz_target() as target:
        run_operations(target, args.examples, seed=args.seed)
        operations_done = time.monotonic()
        run_stateful(target, args.scenarios, steps=args.steps, seed=args.seed)
        report = target.report
    finished = time.monotonic()
    print(report.summary())
    print(
        f"operations phase {operations_done - started:.1f} s, stateful phase "
        f"{finished - operations_done:.1f} s ({report.scenarios} scenarios run)"
    )
    ok = not report.failures and report.server_errors == 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
