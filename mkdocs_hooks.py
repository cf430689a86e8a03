"""The docs site's one hook (mkdocs.yml `hooks:`): links from a page of docs/ to a file outside
it (`../bench/RESULTS.md`, `../deploy/systemd/baton.service`, `../examples/oidc_rp.py`).

Such a relative link works where the pages are read on a forge (GitHub renders docs/*.md in the
repository), but mkdocs knows only docs/, so `--strict` would call it broken. Here each one is
checked against the repository (a link to a file that does not exist is a warning, which
`--strict` turns into a failed build, as for a link between pages) and rewritten for the site:

- a file in PUBLISHED is copied into the site, and the link goes to its copy there;
- any other file links to the repository's copy when `repo_url` is set in mkdocs.yml, else the
  link becomes its text (the path it names stays readable).
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.outside_links")

ROOT = Path(__file__).resolve().parent

# Files outside docs/ that the site carries, by their path in the repository, and where.
PUBLISHED = {
    "bench/RESULTS.md": "benchmarks/results.md",
    "bench/results.png": "benchmarks/results.png",
}

# [text](target) or ![alt](target), the target without spaces, an optional "title" after it.
LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for source, published in PUBLISHED.items():
        path = ROOT / source
        if not path.exists():
            log.warning("mkdocs_hooks.PUBLISHED names %s, which does not exist", source)
            continue
        files.append(File.generated(config, published, abs_src_path=str(path)))
    return files


def outside(page: Page, target: str) -> str | None:
    """The repository path a page's relative link names, when it leaves docs/; else None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
        return None  # a URL, an anchor, or an absolute path (mkdocs checks those)
    path = target.split("#", 1)[0].split("?", 1)[0]
    joined = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page.file.src_uri), path))
    return None if joined == "docs" or joined.startswith("docs/") else joined


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, **_: Any) -> str:
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and "](" in line:
            line = LINK.sub(lambda m: rewritten(m, page, config), line)
        lines.append(line)
    return "\n".join(lines)


def rewritten(match: re.Match[str], page: Page, config: MkDocsConfig) -> str:
    bang, text, target, title = match.groups()
    path = outside(page, target)
    if path is None:
        return match.group(0)
    if path.startswith("../") or not (ROOT / path).exists():
        log.warning("%s links to %s, which is not in the repository", page.file.src_uri, target)
        return match.group(0)
    anchor = target[len(target.split("#", 1)[0]) :]
    if path in PUBLISHED:
        here = posixpath.dirname(page.file.src_uri) or "."
        return f"{bang}[{text}]({posixpath.relpath(PUBLISHED[path], here)}{anchor}{title})"
    if config.repo_url:
        kind = "tree" if (ROOT / path).is_dir() else "blob"
        url = f"{config.repo_url.rstrip('/')}/{kind}/main/{path}{anchor}"
        return f"{bang}[{text}]({url}{title})"
    return text
