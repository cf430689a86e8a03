"""A peer written for node (an npm package and the script that drives it), installed for the
tests that run it: node-oidc-provider (tests/client, tests/upstream), openid-client and the MCP
TypeScript SDK (tests/interop). Skipped without node and npm, except in CI (CI=true), where a
missing peer fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def npm_peer(cache: Path, spec: str, script: Path, *, what: str, project: str) -> Path:
    """`npm install spec` (`oidc-provider@9`, `@modelcontextprotocol/sdk@1`) into `cache`, a
    directory outside the repository, once (kept while its package.json is there); then `script`
    copied beside it (ESM resolves packages next to the script), whose path is returned. `what`
    names the peer in the skip or failure; `project` the name of the cache's own package.json."""

    def unavailable(reason: str) -> NoReturn:
        if in_ci():
            pytest.fail(f"{what} is required in CI: {reason}", pytrace=False)
        pytest.skip(f"{what} unavailable: {reason}")

    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node or npm is not installed")
    cache.mkdir(parents=True, exist_ok=True)
    package = spec.rsplit("@", 1)[0]  # the name without its version (a scoped one keeps its @)
    if not (cache / "node_modules" / package / "package.json").exists():
        if not (cache / "package.json").exists():
            (cache / "package.json").write_text(f'{{"name": "{project}", "private": true}}\n')
        try:
            result = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", spec],
                cwd=cache,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
        except subprocess.TimeoutExpired:
            unavailable("npm install timed out")
        if result.returncode != 0:
            unavailable(f"npm install failed: {result.stderr[-2000:]}")
    copy = cache / script.name
    shutil.copyfile(script, copy)
    return copy
