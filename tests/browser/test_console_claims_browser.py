"""The admin console in a real browser: give alice an email address on her user page, and see
it on the users list and in the audit log (the demo's server, as in test_console_browser)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, expect

from tests.browser.test_console_browser import demo_server


def test_edit_a_users_email_in_the_console(browser: Browser, artifacts: Path) -> None:
    with demo_server() as told:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []  # a CSP violation shows up as a console error
        page.on("console", lambda m: _note(problems, m))

        page.goto(f"{told.base_url}/admin/users")
        page.fill("#username", "admin")
        page.fill("#password", told.admin_password)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/users")

        page.click("table.list a:has-text('alice')")
        page.wait_for_url("**/admin/users/claims?username=alice")
        expect(page.locator("#email")).to_have_text("—")
        page.fill("#claim-email", "alice@example.com")
        page.check("input[name=email_verified]")
        page.fill("#claim-given_name", "Alice")
        page.click("button:has-text('Save claims')")

        expect(page.locator("p.notice")).to_contain_text("Saved: email, email_verified")
        expect(page.locator("#email")).to_contain_text("alice@example.com")
        expect(page.locator("#email .badge")).to_have_text("verified")
        page.screenshot(path=str(artifacts / "user-claims.png"), full_page=True)

        page.goto(f"{told.base_url}/admin/users")
        expect(page.locator("table.list")).to_contain_text("alice@example.com")
        page.goto(f"{told.base_url}/admin/audit")
        row = page.locator("table.list tbody tr").first
        expect(row).to_contain_text("user.set_claims")
        expect(row).to_contain_text("alice")

        # A client's page: its OIDC settings, edited through the form.
        page.goto(f"{told.base_url}/admin/clients")
        page.click("table.list td a:has-text('Demo app')")
        page.select_option("#id_token_signed_response_alg", "ES256")
        page.check("input[name=require_nonce]")
        page.click("button:has-text('Save settings')")
        expect(page.locator("p.notice")).to_contain_text("id_token_signed_response_alg")
        expect(page.locator("#id-token-alg")).to_have_text("ES256")
        page.screenshot(path=str(artifacts / "client-oidc.png"), full_page=True)
        assert problems == []
        page.close()


def _note(problems: list[str], message: ConsoleMessage) -> None:
    if message.location.get("url", "").endswith("/favicon.ico"):
        return  # Baton serves no icon
    if message.type in ("error", "warning"):
        problems.append(message.text)
