"""A reader's whole life in real Chromium against the live app (uvicorn) and a real SMTP server:
sign up, confirm from the emailed link, get an edition, unsubscribe from its link, get no more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Iterator

import livesite
import pytest

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.config import Settings
from newsletter.models import SubscriberStatus
from newsletter.store import consent as consent_store
from newsletter.store import subscribers as subscriber_store

READER = "reader@example.com"


@pytest.fixture
def live(settings) -> Iterator[tuple[Settings, str]]:
    """The app served with BASE_URL at its own address, so every emailed link points at it."""
    with livesite.serve(settings, own_url=True) as url:
        yield settings.model_copy(update={"base_url": url}), url


def send_in_thread(engine, settings: Settings, date: dt.date) -> None:
    """The real pipeline send, on its own thread (Playwright's sync API owns this one's loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            prepared = prepare_edition(engine, settings, date)
            assert prepared is not None
            asyncio.run(send_edition(engine, settings, prepared.stored))
        except BaseException as exc:  # noqa: BLE001 (re-raised below, in the test's thread)
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    if errors:
        raise errors[0]


def status_of(engine, email: str) -> SubscriberStatus:
    return subscriber_store.get_subscriber(engine, email).status


def test_sign_up_confirm_receive_unsubscribe_in_a_browser(live, engine, smtp_server):
    settings, url = live
    subscriber_ops.add_subscriber(engine, "other@example.com")  # proves the later send happened
    with livesite.browser_context(viewport={"width": 390, "height": 844}) as context:
        page = context.new_page()

        # Sign up on the form (a phone-sized window).
        page.goto(f"{url}/subscribe")
        honeypot = page.locator("#website").bounding_box()
        assert honeypot is None or honeypot["x"] + honeypot["width"] <= 0  # off-screen
        page.get_by_label("Email address").fill(READER)
        page.get_by_label("Your name").fill("Rea Der")
        page.screenshot(path=livesite.artifact("public-subscribe.png"), full_page=True)
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        page.screenshot(path=livesite.artifact("public-check-inbox.png"), full_page=True)
        assert status_of(engine, READER) is SubscriberStatus.PENDING

        # The confirmation email arrived; its link opens a page with a button.
        [item] = [i for i in smtp_server.received if i.rcpt_tos == [READER]]
        text = item.message.get_body(("plain",)).get_content()
        link = re.search(rf"{re.escape(url)}/confirm/\S+", text).group(0)
        page.goto(link)
        assert status_of(engine, READER) is SubscriberStatus.PENDING  # opening is not confirming
        page.screenshot(path=livesite.artifact("public-confirm.png"), full_page=True)
        page.get_by_role("button", name="Confirm").click()
        page.get_by_role("heading", name="You're subscribed").wait_for()
        page.screenshot(path=livesite.artifact("public-confirmed.png"), full_page=True)
        assert status_of(engine, READER) is SubscriberStatus.ACTIVE
        consent = consent_store.get_consent(engine, READER)
        assert consent.consent_ip == "127.0.0.1" and "Chrome" in consent.consent_user_agent

        # An edition goes out; its List-Unsubscribe link leads to a page with one button.
        send_in_thread(engine, settings, dt.date(2026, 11, 25))
        [edition] = [i.message for i in smtp_server.received[1:] if i.rcpt_tos == [READER]]
        https = re.findall(r"<(https?://[^>]+)>", edition["List-Unsubscribe"])[0]
        assert https.startswith(f"{url}/unsubscribe/")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(https)
        page.screenshot(path=livesite.artifact("public-unsubscribe.png"), full_page=True)
        assert status_of(engine, READER) is SubscriberStatus.ACTIVE  # the GET changed nothing
        page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You're unsubscribed").wait_for()
        page.screenshot(path=livesite.artifact("public-unsubscribed.png"), full_page=True)
        assert status_of(engine, READER) is SubscriberStatus.UNSUBSCRIBED

        # The archive shows what went out, without anything personal.
        page.goto(f"{url}/archive")
        page.screenshot(path=livesite.artifact("public-archive.png"), full_page=True)
        page.get_by_role("link", name=re.compile("25 November 2026")).click()
        page.wait_for_url(f"{url}/archive/2026-11-25")
        page.screenshot(path=livesite.artifact("public-archive-edition.png"))
        assert READER not in page.content()

    before = len(smtp_server.received)
    send_in_thread(engine, settings, dt.date(2026, 11, 24))
    later = [rcpt for i in smtp_server.received[before:] for rcpt in i.rcpt_tos]
    assert later == ["other@example.com"]
