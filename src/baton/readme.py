"""The documentation's generated sections (the options table in docs/configuration.md, the
endpoints table in docs/endpoints.md): the text between a pair of markers replaced, and the
command that writes or checks it, shared by `python -m baton.config` and
`python -m baton.server.routes`. The command is still called `readme` (the tables lived in the
README before the docs site). Standard library only, so that `baton.config` can use it without
importing the server.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def with_section(text: str, start: str, end: str, body: str) -> str:
    """`text` with what lies between the markers `start` and `end` replaced by `body`;
    ValueError when the markers are missing."""
    head, found, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise ValueError(f"no {start} ... {end} markers")
    return f"{head}{start}\n{body}{end}{tail}"


@dataclass(frozen=True)
class Section:
    """One generated section: the module whose `readme` command writes it, what it is called in
    messages, its markers, its text, and the page that holds it (relative to the repository
    root, where the command runs)."""

    module: str  # `python -m MODULE readme`
    name: str  # "options table"
    start: str
    end: str
    body: Callable[[], str]
    path: str  # "docs/configuration.md"

    def within(self, text: str) -> str:
        """`text` with this section regenerated."""
        return with_section(text, self.start, self.end, self.body())

    def command(self, argv: Sequence[str]) -> int:
        """`python -m MODULE table` prints the section; `python -m MODULE readme [--check]
        [PAGE]` rewrites it in its page (`self.path` unless another is named), or with `--check`
        writes nothing and exits 1 with one line naming the command when the page's copy is
        stale."""
        if list(argv) == ["table"]:
            sys.stdout.write(self.body())
            return 0
        rest = list(argv[1:])
        check = "--check" in rest
        paths = [arg for arg in rest if arg != "--check"]
        if argv[:1] != ["readme"] or len(paths) > 1 or any(p.startswith("-") for p in paths):
            print(
                f"usage: python -m {self.module} table | readme [--check] [{self.path}]",
                file=sys.stderr,
            )
            return 2
        path = Path(paths[0] if paths else self.path)
        text = path.read_text()
        updated = self.within(text)
        if check:
            if updated != text:
                print(
                    f"{path}: the {self.name} is stale: run `python -m {self.module} readme`",
                    file=sys.stderr,
                )
                return 1
            print(f"{path}: {self.name} up to date")
            return 0
        if updated != text:
            path.write_text(updated)
        print(f"{path}: {self.name} {'rewritten' if updated != text else 'up to date'}")
        return 0
