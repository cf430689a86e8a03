"""The admin console in a real browser: sign in, find a grant, open its timeline, revoke it.

The server is `baton demo`'s, with its story told (a family revoked by a replay, and a second
grant of alice's still live). Screenshots of the timelines are written to tests/artifacts/.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, expect
from rich.console import Console

from baton import demo


def test_sign_in_find_a_grant_open_its_timeline_and_revoke_it(
    browser: Browser, artifacts: Path
) -> None:
    with demo_server() as told:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=2)
        problems: list[str] = []  # a CSP violation shows up as a console error
        page.on("console", lambda m: _note(problems, m))

        page.goto(f"{told.base_url}/admin/")
        assert "/login?next=" in page.url
        page.fill("#username", "admin")
        page.fill("#password", told.admin_password)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/grants")

        # Find alice's live grant.
        page.fill("input[name=user]", "alice")
        page.select_option("select[name=status]", "active")
        page.click("button:has-text('Search')")
        found = page.locator("table.list a.mono[href^='/admin/grants/']")
        expect(found).to_have_count(1)
        expect(found).to_have_text(told.phone_grant_id)
        found.click()

        # Its timeline: two pairs, the first exchanged with its leeway; hover texts present.
        figure = page.locator("figure#timeline")
        expect(figure.locator("svg")).to_be_visible()
        expect(figure.locator("rect.bar-refresh")).to_have_count(2)
        expect(figure.locator("circle.exchange")).to_have_count(1)
        expect(figure.locator("rect.leeway")).to_have_count(1)
        first_title = figure.locator("rect.bar-refresh title").first.text_content() or ""
        assert first_title.startswith("gen 0 refresh token\nissued ")
        figure.screenshot(path=str(artifacts / "timeline-live.png"))

        # Revoke it: the page then says so, and the family line is drawn.
        page.click("button:has-text('Revoke this grant')")
        page.wait_for_url(f"**/admin/grants/{told.phone_grant_id}")
        expect(page.locator("h1 .badge")).to_have_text("revoked (admin)")
        expect(figure.locator("g.family-revoked")).to_have_count(1)
        expect(page.locator("button:has-text('Revoke this grant')")).to_have_count(0)

        # The replayed family, from the security events page: the reuse in red.
        page.goto(f"{told.base_url}/admin/events")
        page.click(f"a[href='/admin/grants/{told.grant_id}#timeline']")
        expect(figure.locator("rect.bar-refresh")).to_have_count(4)
        expect(figure.locator("g.reuse")).to_have_count(1)
        expect(figure.locator("path.retry")).to_have_count(1)
        expect(figure.locator("g.family-reuse")).to_have_count(1)
        figure.screenshot(path=str(artifacts / "timeline.png"))
        page.screenshot(path=str(artifacts / "grant-page.png"), full_page=True)

        # The audit log has the revocation, by admin.
        page.goto(f"{told.base_url}/admin/audit")
        row = page.locator("table.list tbody tr").first
        expect(row).to_contain_text("admin")
        expect(row).to_contain_text("grant.revoke")
        expect(row).to_contain_text(told.phone_grant_id)
        assert problems == []
        page.close()


def test_every_console_page_fits_a_phone_without_sideways_scrolling(
    browser: Browser, artifacts: Path
) -> None:
    """At 360 px wide the page never scrolls sideways: wide tables scroll inside their frame.
    Clients show their names (the id beside them), and security-event details show dates."""
    with demo_server() as told:
        page = browser.new_page(viewport={"width": 360, "height": 740})
        page.goto(f"{told.base_url}/login?next=/admin/")
        page.fill("#username", "admin")
        page.fill("#password", told.admin_password)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/grants")
        paths = [
            "/admin/grants",
            f"/admin/grants/{told.grant_id}",
            "/admin/clients",
            "/admin/users",
            "/admin/users/claims?username=alice",
            "/admin/events",
            "/admin/audit",
        ]
        for path in paths:
            page.goto(told.base_url + path)
            overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert overflow[0] <= overflow[1], (path, overflow)
        page.screenshot(path=str(artifacts / "audit-phone.png"), full_page=True)

        page.goto(f"{told.base_url}/admin/events")
        table = page.locator("table.list")
        assert page.evaluate(
            "document.querySelector('.scroll').scrollWidth"
            " > document.querySelector('.scroll').clientWidth"
        ), "the events table scrolls inside its frame"
        expect(table).to_contain_text("Demo app")
        expect(table).not_to_contain_text("exchanged at 1")
        page.close()


@contextmanager
def demo_server() -> Iterator[demo.Demo]:
    """The demo's server in a thread of its own (Playwright's sync API holds an event loop in
    this one, and the demo's store set-up runs its own)."""
    ready: queue.Queue[demo.Demo | BaseException] = queue.Queue()
    done = threading.Event()

    def serve() -> None:
        try:
            with demo.story(Console(file=io.StringIO(), width=120)) as told:
                ready.put(told)
                done.wait()
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    got = ready.get(timeout=120)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got
    finally:
        done.set()
        thread.join(timeout=30)


def _note(problems: list[str], message: ConsoleMessage) -> None:
    if message.location.get("url", "").endswith("/favicon.ico"):
        return  # Baton serves no icon
    if message.type in ("error", "warning"):
        problems.append(message.text)
