"""Chromium for the browser tests: Debian's own (`apt-get install chromium`, which `.ci/run`
does), driven by Playwright's Python driver; never a downloaded browser.

Without /usr/bin/chromium the tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path(os.environ.get("BATON_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def unavailable(reason: str) -> None:
    message = f"Chromium at {CHROMIUM} is not usable ({reason})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must run the browser tests", pytrace=False)
    pytest.skip(message + "; install it with `apt-get install -y chromium`")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable("not installed")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        except Exception as exc:  # a broken install: say why
            unavailable(str(exc).splitlines()[0])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (git ignores it): look at them after a run."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
