"""The README and the docs site (mkdocs.yml, docs/): every link of the README leads somewhere
(mkdocs checks the site's pages, not the README), the site's build fails on a broken link or
anchor, a link out of docs/ to a missing file included (mkdocs_hooks.py), and the SDK page shows
the walkthrough's client as examples/sdk_script.py has it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slugs(markdown: str) -> set[str]:
    """The anchors a forge (and mkdocs' toc) makes of a page's headings."""
    found = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#+ (.*)", line)):
            text = re.sub(r"[^\w\- ]", "", heading.group(1).lower())
            found.add(text.strip().replace(" ", "-"))
    return found


def test_every_link_of_the_readme_leads_somewhere() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = [t for t in LINK.findall(readme) if not re.match(r"[a-z]+:", t)]
    assert len(targets) > 20
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            assert anchor in slugs((ROOT / path).read_text()), target


def test_the_readme_quick_start_comes_before_the_links() -> None:
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.*)$", readme, re.M)
    assert headings == [
        "Why Baton",
        "Install",
        "Quick start",
        "MCP servers and clients",
        "Rolling out a stricter policy",
        "Documentation",
    ]
    assert len(readme.splitlines()) < 150


def test_every_page_of_docs_is_in_the_sites_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    named = set(re.findall(r"^\s+- (?:.*: )?([\w/-]+\.md)$", config, re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= named, pages - named


def build(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """What the site is built from, copied: mkdocs.yml, its hook, docs/ and the files outside
    docs/ that the pages link to."""
    pytest.importorskip("mkdocs", reason="mkdocs comes with the dev extra")
    for name in ("mkdocs.yml", "mkdocs_hooks.py"):
        shutil.copy2(ROOT / name, tmp_path / name)
    for folder in ("docs", "bench", "deploy", "examples"):
        shutil.copytree(
            ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns(".scratch", "out")
        )
    return tmp_path


def test_the_site_builds_and_publishes_the_benchmark_results(tree: Path) -> None:
    built = build(tree)
    assert built.returncode == 0, built.stderr
    results = (tree / "site" / "benchmarks" / "results" / "index.html").read_text()
    assert "Baton against its peers" in results
    # A page's link to ../bench/RESULTS.md goes to the published copy on the site.
    index = (tree / "site" / "index.html").read_text()
    assert 'href="benchmarks/results/"' in index


def test_a_link_out_of_docs_to_a_missing_file_fails_the_build(tree: Path) -> None:
    page = tree / "docs" / "deployment.md"
    page.write_text(page.read_text() + "\nSee [the unit](../deploy/systemd/nothing.service).\n")
    built = build(tree)
    assert built.returncode == 1
    assert "deployment.md links to ../deploy/systemd/nothing.service" in built.stderr


def test_a_broken_anchor_between_pages_fails_the_build(tree: Path) -> None:
    page = tree / "docs" / "walkthrough.md"
    page.write_text(page.read_text() + "\nSee [the options](configuration.md#no-such-section).\n")
    built = build(tree)
    assert built.returncode == 1
    assert "no-such-section" in built.stderr


def test_the_sdk_page_shows_the_walkthroughs_client_as_the_example_has_it() -> None:
    sdk = (ROOT / "docs" / "sdk.md").read_text()
    shown = sdk.split("## A script", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    example = (ROOT / "examples" / "sdk_script.py").read_text()
    assert shown.strip() in example and "def main() -> None:" in shown
    assert "except ReauthorizationRequired" in shown
    walkthrough = (ROOT / "docs" / "walkthrough.md").read_text()
    created = re.search(r"baton client create (.*?)--json", walkthrough, re.S)
    assert created is not None
    redirect = re.search(r"--redirect-uri (\S+)", created.group(1))
    scope = re.search(r'--scope "([^"]+)"', created.group(1))
    assert redirect is not None and scope is not None
    assert f'REDIRECT_URI = "{redirect.group(1)}"' in shown
    assert f'SCOPE = "{scope.group(1)}"' in shown
