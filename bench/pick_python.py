"""The CPython that `make bench` runs the Python servers on: the fastest one on this machine.

    python3 bench/pick_python.py            # prints the chosen interpreter's path
    python3 bench/pick_python.py --report   # every candidate and its time, as a Markdown table

Interpreters of one version differ in how they were built. This machine's `python3` (pyenv's
3.11.7) is a shared-library build without PGO or LTO; Debian's `/usr/bin/python3.11` is linked
statically and built with PGO and LTO, as the official container images are. Measured on the
2-core AMD VM of 2026-12-03, the probe below took 122-145 ms on Debian's and 145-239 ms on
pyenv's (three runs of this script), and Baton spent about 14% less CPU per refresh on Debian's
(`bench/rounds.py`, rounds alternating between the two). A benchmark of servers written
in Python should run them on the interpreter a platform team would deploy, and run every Python
server on the same one: Baton, django-oauth-toolkit and Authlib all get the interpreter chosen
here (`compare.py` builds the peers' virtualenvs from the one it runs on), and RESULTS.md names
it with each candidate's time.

Candidates: CPython 3.11 or newer, found as `python3`, `python3.N` on PATH and in /usr/bin and
/usr/local/bin, that can make a virtualenv with pip; each runs the same loop (object creation,
attribute and dict access, string formatting, coroutines: what a request handler does) once a
round, the candidates alternating, for five rounds, and keeps its best time. Ties within 3% go
to the interpreter found first (`python3`).
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

# Runs in each candidate: prints its version and the loop's time in seconds.
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
objects(20_000)  # warm
started = time.perf_counter()
objects(150_000)
asyncio.run(outer(150_000))
print(".".join(map(str, sys.version_info[:3])), time.perf_counter() - started)
"""
ROUNDS = 5  # each candidate runs the probe once a round; the rounds alternate the candidates


def candidates() -> list[str]:
    """Distinct interpreters, each as the binary behind it, in the order found."""
    found: list[str] = []
    places = [shutil.which(name) for name in NAMES]
    places += [str(Path(folder) / name) for folder in FOLDERS for name in NAMES]
    for place in places:
        if place is None or not os.access(place, os.X_OK):
            continue
        real = resolved(place)
        if real not in found:
            found.append(real)
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
    """(version, seconds) of one run of the probe, for a usable CPython >= 3.11, else None."""
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


def measure(rounds: int = ROUNDS) -> list[tuple[str, str, float]]:
    """(path, version, best seconds) of every usable candidate, in the order found.

    The candidates take turns, round after round, so a slow spell of a shared machine (seen
    here: the same loop 30% slower for a few seconds) falls on all of them rather than on one."""
    best: dict[str, tuple[str, float]] = {}
    for place in candidates():
        got = timed(place)
        if got is not None:
            best[place] = got
    for _ in range(rounds - 1):
        for place, (version, seconds) in best.items():
            got = timed(place)
            if got is not None:
                best[place] = (version, min(seconds, got[1]))
    return [(place, version, seconds) for place, (version, seconds) in best.items()]


def choose(results: list[tuple[str, str, float]]) -> str:
    if not results:
        return sys.executable
    first = results[0]
    fastest = min(results, key=lambda result: result[2])
    return fastest[0] if fastest[2] * TIE < first[2] else first[0]


def report(results: list[tuple[str, str, float]], chosen: str) -> str:
    head = "| interpreter | version | probe (best of 5 alternating runs) | |"
    lines = [head, "|---|---|---:|---|"]
    for place, version, seconds in results:
        mark = "chosen" if place == chosen else ""
        lines.append(f"| `{place}` | {version} | {seconds * 1000:.0f} ms | {mark} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="every candidate, as Markdown")
    args = parser.parse_args()
    results = measure()
    chosen = choose(results)
    print(report(results, chosen) if args.report else chosen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
