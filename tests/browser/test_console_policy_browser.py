"""A client's token policy in the console, in a real browser (issue 28): the policy in force,
the integration health panel and the form to schedule a report-only change, with no Content
Security Policy violation and nothing scrolling sideways on a phone."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.browser.test_console_browser import _note, demo_server


def test_schedule_a_report_only_change_from_the_client_page(
    browser: Browser, artifacts: Path
) -> None:
    with demo_server() as told:
        page = browser.new_page(viewport={"width": 360, "height": 740})
        problems: list[str] = []  # a CSP violation shows up as a console error
        page.on("console", lambda m: _note(problems, m))
        page.goto(f"{told.base_url}/login?next=/admin/clients")
        page.fill("#username", "admin")
        page.fill("#password", told.admin_password)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/clients")
        page.locator("table.list a[href^='/admin/clients/']").first.click()
        page.wait_for_url("**/admin/clients/*")

        expect(page.locator("#knob-leeway")).to_contain_text("server default")
        expect(page.locator("#scheduled-change")).to_have_text("None.")
        expect(page.locator("#health-facts")).to_be_visible()
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width

        form = page.locator("#schedule-policy")
        form.locator("#leeway").fill("60")
        form.locator("#effective_at").fill("2099-01-01T09:00")
        form.locator("button[type=submit]").click()
        expect(page.locator("p.notice")).to_contain_text("Change scheduled")
        change = page.locator("#scheduled-change")
        expect(change).to_contain_text("2099-01-01 09:00:00 UTC")
        expect(change.locator(".badge")).to_have_text("report-only")
        expect(page.locator("#knob-leeway")).to_contain_text("60 s")
        page.screenshot(path=str(artifacts / "client-policy.png"), full_page=True)
        page.goto(f"{told.base_url}/admin/clients")
        expect(page.locator("td.policy-change").first).to_contain_text("report-only")
        assert problems == []
        page.close()
