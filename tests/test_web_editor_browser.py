"""An editor's session in real Chromium: log in, preview a date at phone and desktop
width and as text, send a test, and the real SMTP server gets it.

Screenshots of both widths are kept in test-artifacts/ for people to look at.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from livesite import CHROMIUM, CHROMIUM_FLAGS, artifact, browser_context, serve
from webeditor import PASSWORD, editor_settings

DAY = dt.date(2026, 11, 25)


def test_editor_previews_at_phone_and_desktop_then_sends_a_test(settings, smtp_server):
    from playwright.sync_api import expect

    with (
        serve(editor_settings(settings)) as url,
        browser_context(viewport={"width": 1400, "height": 1000}) as context,
    ):
        page = context.new_page()
        page.goto(f"{url}/editor/edition/{DAY}?view=desktop")
        assert "/editor/login" in page.url  # not logged in yet

        page.fill("#password", PASSWORD)
        page.click("button:has-text('Log in')")
        page.wait_for_url(f"{url}/editor/edition/{DAY}")
        subject = page.locator("#subject").inner_text()
        assert subject.startswith("The Daily Brief — Wednesday 25 November 2026")

        page.click("a:has-text('Phone')")
        page.wait_for_url("**view=phone")
        frame = page.frame_locator("#preview-frame")
        expect(frame.get_by_text("Hello Sample Reader,")).to_be_visible()
        phone = page.locator("#preview-frame").bounding_box()
        phone_container = frame.locator("table.container").bounding_box()
        page.screenshot(path=artifact("editor-preview-phone.png"))

        page.click("a:has-text('Desktop')")
        page.wait_for_url("**view=desktop")
        frame = page.frame_locator("#preview-frame")
        expect(frame.get_by_text("Hello Sample Reader,")).to_be_visible()
        desktop = page.locator("#preview-frame").bounding_box()
        desktop_container = frame.locator("table.container").bounding_box()
        page.screenshot(path=artifact("editor-preview-desktop.png"))

        assert phone is not None and desktop is not None
        assert phone["width"] == 375 and desktop["width"] == 800
        assert phone_container is not None and desktop_container is not None
        assert phone_container["width"] <= 375 < desktop_container["width"]  # the email reflows

        page.click("a:has-text('Text')")
        page.wait_for_url("**view=text")
        expect(page.locator("#text-part")).to_contain_text("Hello Sample Reader,")
        expect(page.locator("#preview-frame")).to_have_count(0)

        page.fill("#test-email", "editor@example.net")
        page.click("button:has-text('Send test')")
        expect(page.locator(".flash.ok")).to_contain_text("Test sent to editor@example.net")

    assert smtp_server.recipients() == ["editor@example.net"]
    message = smtp_server.received[0].message
    assert str(message["Subject"]) == subject


def test_a_session_cookie_copied_before_logout_opens_nothing_in_another_browser(settings):
    """The session ends on the server: a cookie copied out of one Chromium context
    before logging out opens no editor page in another context afterwards."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with serve(editor_settings(settings)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            first, second = browser.new_context(), browser.new_context()
            page = first.new_page()
            page.goto(f"{url}/editor/login")
            page.fill("#password", PASSWORD)
            page.click("button:has-text('Log in')")
            page.wait_for_url(f"{url}/editor")
            copied = [c for c in first.cookies() if c["name"] == "newsletter_session"]
            assert len(copied) == 1 and copied[0]["httpOnly"] and copied[0]["sameSite"] == "Strict"

            second.add_cookies(copied)
            other = second.new_page()
            other.goto(f"{url}/editor")
            assert other.url == f"{url}/editor"  # the copy works while the session lives

            page.click("button:has-text('Log out')")
            page.wait_for_url(f"{url}/editor/login?ended=logout")

            other.goto(f"{url}/editor/subscribers")
            assert "/editor/login" in other.url
            assert other.locator("#password").count() == 1
        finally:
            browser.close()
