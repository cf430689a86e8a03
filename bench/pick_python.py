"""The CPython that `make bench` runs the Python servers on: the fastest one on this machine.

    python3 bench/pick_python.py            # prints the chosen interpreter's path
    python3 bench/pick_python.py --report   # every candidate and its time, as a Markdown table

Interpreters of one version differ in how they were built. This machine's `python3` (pyenv's
3.11.7) is a shared-library build without PGO or LTO; Debian's `/usr/bin/python3.11` is linked
statically and built with PGO and LTO, as the official container images are. Measured on the
2-core AMD VM of 2026-12-03, the pure-Python loop below took 224 ms on Debian's and 254 ms on
pyenv's (12% more), and Baton's refresh exchanges moved with it. A benchmark of servers written
in Python should run them on the interpreter a platform team would deploy, and run every Python
server on the same one: Baton, django-oauth-toolkit and Authlib all get the interpreter chosen
here (`compare.py` builds the peers' virtualenvs from the one it runs on), and RESULTS.md names
it with each candidate's time.

Candidates: CPython 3.11 or newer, found as `python3`, `python3.N` on PATH and in /usr/bin and
/usr/local/bin, that can make a virtualenv with pip; each runs the same loop (object creation,
attribute and dict access, string formatting, coroutines: what a request handler does) five
times and keeps its best time. Ties within 3% go to the interpreter found first (`python3`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

MINIMUM = (3, 11)
NAMES = ["python3", *(f"python3.{minor}" for minor in range(11, 20))]
FOLDERS = ["/usr/bin", "/usr/local/bin"]
TIE = 1.03  # a candidate must be more than 3% faster than the first to be chosen over it

# Runs in each candidate: prints its version and its best time in seconds.
PROBE = r"""
import asyncio, ensurepip, sys, time, venv
ensurepip.version()  # Debian ships ensurepip apart (python3.N-venv): without it, no virtualenv
class Pair:
    __slots__ = ("number", "name")
    def __init__(self, number, name):
        self.number = number
        self.name = name
def objects(n):
    total, seen = 0, {}
    for i in range(n):
        pair = Pair(i, f"t{i:08x}")
        seen[pair.name] = pair
        total += len(pair.name) + pair.number
    return total
async def inner(i):
    return i
async def outer(n):
    for i in range(n):
        await inner(i)
best = float("inf")
for _ in range(5):
    started = time.perf_counter()
    objects(150_000)
    asyncio.run(outer(150_000))
    best = min(best, time.perf_counter() - started)
print(".".join(map(str, sys.version_info[:3])), best)
"""


def candidates() -> list[str]:
    """Distinct interpreters (by resolved path), in the order found."""
    found: list[str] = []
    seen: set[str] = set()
    places = [shutil.which(name) for name in NAMES]
    places += [str(Path(folder) / name) for folder in FOLDERS for name in NAMES]
    for place in places:
        if place is None or not os.access(place, os.X_OK):
            continue
        real = resolved(place)
        if real not in seen:
            seen.add(real)
            found.append(place)
    return found


def resolved(place: str) -> str:
    """The binary behind a path; a pyenv shim resolves to the version it would run."""
    try:
        out = subprocess.run(
            [place, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.path.realpath(place)
    return os.path.realpath(out or place)


def timed(place: str) -> tuple[str, float] | None:
    """(version, best seconds) for a usable CPython >= 3.11, else None."""
    try:
        out = subprocess.run(
            [place, "-I", "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None  # too old for the probe's syntax, or no venv / ensurepip
    version, seconds = out[0], float(out[1])
    if tuple(int(part) for part in version.split(".")[:2]) < MINIMUM:
        return None
    return version, seconds


def measure() -> list[tuple[str, str, float]]:
    """(path, version, best seconds) of every usable candidate, in the order found."""
    results = []
    for place in candidates():
        got = timed(place)
        if got is not None:
            results.append((place, *got))
    return results


def choose(results: list[tuple[str, str, float]]) -> str:
    if not results:
        return sys.executable
    first = results[0]
    fastest = min(results, key=lambda result: result[2])
    return fastest[0] if fastest[2] * TIE < first[2] else first[0]


def report(results: list[tuple[str, str, float]], chosen: str) -> str:
    lines = ["| interpreter | version | probe (best of 5) | |", "|---|---|---:|---|"]
    for place, version, seconds in results:
        mark = "chosen" if place == chosen else ""
        lines.append(f"| `{resolved(place)}` | {version} | {seconds * 1000:.0f} ms | {mark} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="every candidate, as Markdown")
    args = parser.parse_args()
    results = measure()
    chosen = choose(results)
    print(report(results, chosen) if args.report else resolved(chosen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
