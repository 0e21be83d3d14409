"""The editors' pages under /editor, behind a login (see the package docstring).

    editor_auth.py         login (CSRF-protected, throttled, local `next` only), logout
    editor_pages.py        the dashboard of dates; one date's preview, its HTML and .eml
    editor_actions.py      test send, build/rebuild, hold/un-hold, send now
    editor_subscribers.py  counts, search, unsubscribe/erase one, CSV export
    editor_sends.py        "send now" as background sends, each in a thread of its own
    editor_common.py       page rendering with security headers, flash messages, dates

Every page but the login needs a logged-in editor and every POST a CSRF token
(`security.editor_only`); no page runs JavaScript. What the pages show and what
the actions may do come from the application layer (`newsletter.app`), run in
the threadpool so the server's event loop never waits on the store or a render.
"""

from __future__ import annotations

from starlette.routing import Route

from newsletter.web import editor_actions as actions
from newsletter.web import editor_auth as auth
from newsletter.web import editor_pages as pages
from newsletter.web import editor_subscribers as people
from newsletter.web.editor_sends import BackgroundSends

__all__ = ["ROUTES", "BackgroundSends", "stop_sends"]

_DAY = "/editor/edition/{day}"

ROUTES: list[Route] = [
    Route("/editor", pages.dashboard, name="editor_dashboard"),
    Route("/editor/login", auth.login, methods=["GET", "POST"], name="editor_login"),
    Route("/editor/logout", auth.logout, methods=["POST"], name="editor_logout"),
    Route(
        "/editor/logout-everywhere",
        auth.logout_everywhere,
        methods=["POST"],
        name="editor_logout_everywhere",
    ),
    Route(_DAY, pages.edition, name="editor_edition"),
    Route(f"{_DAY}/html", pages.edition_html, name="editor_edition_html"),
    Route(f"{_DAY}/message.eml", pages.edition_eml, name="editor_edition_eml"),
    Route(f"{_DAY}/test", actions.test_send, methods=["POST"], name="editor_test_send"),
    Route(f"{_DAY}/build", actions.build, methods=["POST"], name="editor_build"),
    Route(f"{_DAY}/hold", actions.hold, methods=["POST"], name="editor_hold"),
    Route(f"{_DAY}/unhold", actions.unhold, methods=["POST"], name="editor_unhold"),
    Route(f"{_DAY}/send", actions.send_now, methods=["POST"], name="editor_send_now"),
    Route("/editor/subscribers", people.subscribers, name="editor_subscribers"),
    Route("/editor/subscribers.csv", people.export, name="editor_subscribers_csv"),
    Route(
        "/editor/subscribers/unsubscribe",
        people.unsubscribe_one,
        methods=["POST"],
        name="editor_unsubscribe",
    ),
    Route("/editor/subscribers/delete", people.delete_one, methods=["POST"], name="editor_erase"),
]


async def stop_sends(app) -> None:  # noqa: ANN001 (a Starlette app)
    """For the app's shutdown: let running "send now" tasks record their in-flight messages
    and stop, leaving the rest queued for the next run (instead of being cut off mid-message)."""
    sends = getattr(app.state, "editor_sends", None)
    if sends is not None:
        await sends.stop_all()
