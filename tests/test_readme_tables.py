"""The docs' generated sections (`baton.readme.Section`): the options table of
docs/configuration.md and the endpoints table of docs/endpoints.md. `readme --check` says whether
a page's copy is stale and writes nothing; each section's own test compares the real page with
what its declarations generate; without a path the command works on the section's own page."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config.table import SECTION as OPTIONS
from baton.readme import Section
from baton.server.routes import README_SECTION as ENDPOINTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("section", [OPTIONS, ENDPOINTS], ids=lambda s: s.name)
def test_check_says_whether_the_section_is_stale_and_writes_nothing(
    section: Section, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = f"# Title\n\n{section.start}\n| old |\n{section.end}\n"
    path = tmp_path / "page.md"
    path.write_text(stale)
    assert section.command(["readme", "--check", str(path)]) == 1
    assert path.read_text() == stale
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"python -m {section.module} readme" in err, err
    path.write_text(section.within(stale))
    assert section.command(["readme", str(path), "--check"]) == 0
    assert capsys.readouterr().err == ""
    # Anything else is a usage error, never a traceback or a write.
    assert section.command(["readme", "--check", str(path), "other.md"]) == 2
    assert section.command(["readme", "--chek", str(path)]) == 2
    assert section.command(["nonsense"]) == 2


@pytest.mark.parametrize("section", [OPTIONS, ENDPOINTS], ids=lambda s: s.name)
def test_without_a_path_the_command_checks_the_sections_own_page(
    section: Section, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert section.path.startswith("docs/") and (ROOT / section.path).is_file()
    assert section.command(["readme", "--check"]) == 0
    assert capsys.readouterr().out == f"{section.path}: {section.name} up to date\n"
    assert section.start in (ROOT / section.path).read_text()
    # The README no longer holds the tables: the site's pages do.
    assert section.start not in (ROOT / "README.md").read_text()
