"""The options table of docs/configuration.md is generated from the declarations in
`baton.config`: a stale table fails here, naming the command that rewrites it; and the page's
config file example works as written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from click.testing import CliRunner

from baton.cli import main
from baton.config import TABLE_END, TABLE_START, options_table, with_table
from baton.config import main as config_main

CONFIGURATION = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_the_docs_options_table_is_the_generated_one() -> None:
    page = CONFIGURATION.read_text()
    table = page.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert table.strip() == options_table().strip(), (
        "docs/configuration.md's options table is stale: run `.venv/bin/python -m baton.config "
        "readme` from the repository root"
    )


def test_the_generator_rewrites_only_the_table(tmp_path: Path) -> None:
    stale = f"# Title\n\n{TABLE_START}\n| old |\n{TABLE_END}\n\nafter\n"
    path = tmp_path / "README.md"
    path.write_text(stale)
    assert config_main(["readme", str(path)]) == 0
    assert path.read_text() == with_table(stale)
    assert path.read_text().endswith(f"{options_table()}{TABLE_END}\n\nafter\n")
    assert config_main(["nonsense"]) == 2


def test_the_docs_config_file_example_works_as_written(tmp_path: Path) -> None:
    page = CONFIGURATION.read_text()
    section = page.split("## Config file", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    commands = re.search(r"```sh\n(.*?)```", section, re.S)
    assert example is not None and commands is not None
    (tmp_path / "baton.toml").write_text(example.group(1))
    (tmp_path / "baton.toml").chmod(0o644)
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("BATON_")}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for line in commands.group(1).splitlines():
            words = line.split("#", 1)[0].split()
            env = dict(clean)
            while words and "=" in words[0]:
                name, value = words.pop(0).split("=", 1)
                env[name] = value
            assert words[:1] == ["baton"], line
            if words[1] == "serve":  # the same resolution, without listening
                words[1:2] = ["config", "show"]
            result = CliRunner().invoke(main, words[1:], env=env)
            assert result.exit_code == 0, (line, result.stderr)
            if "--json" in words:
                rows = json.loads(result.stdout)
                assert rows["workers"] == {"value": 4, "source": "env"}
                assert rows["retry_policy"] == {"value": "fork", "source": "file"}
            if "--leeway" in words:
                assert re.search(r"^leeway +flag +60$", result.stdout, re.M), result.stdout
    finally:
        os.chdir(cwd)
