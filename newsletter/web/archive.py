"""The public archive: every edition that went out, as an index, a page each, and an Atom feed.

An edition page is the stored email HTML (the very bytes subscribers got) with
the personal slots filled with neutral values: no name, no address, and the
site's general unsubscribe page instead of anyone's signed link. A small bar
on top links back to the archive and the sign-up form. Only editions whose
send started are shown (see `store.archive`); anything else is a 404.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from itertools import groupby

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter import atom
from newsletter.compose import view_online_url
from newsletter.config import Settings
from newsletter.personalize import neutral_slots, personalize
from newsletter.store import editions as edition_store
from newsletter.store.archive import PUBLISHED, PublishedEdition, list_published

FEED_ENTRIES = 20
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
# The email HTML is ours, but it carries article text and images from the sources: no
# script may run on the site's origin, whatever an article smuggled in.
EDITION_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def long_date(date: dt.date) -> str:
    """`Wednesday 25 November 2026` (English, like the default subject line)."""
    return f"{date:%A} {date.day} {date:%B %Y}"


def _months(items: list[PublishedEdition]) -> Iterator[tuple[str, list[PublishedEdition]]]:
    for month, group in groupby(items, key=lambda item: item.rendered.date.strftime("%B %Y")):
        yield month, list(group)


def archive_index(request: Request) -> Response:
    """Every published edition, newest first, grouped by month."""
    items = list_published(request.app.state.engine)
    response = request.app.state.pages.render(
        request, "archive.html", months=list(_months(items)), count=len(items), long_date=long_date
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def archive_edition(request: Request) -> Response:
    """One edition as subscribers saw it, minus anything personal."""
    settings: Settings = request.app.state.settings
    raw = request.path_params["date"]
    try:
        date = dt.date.fromisoformat(raw) if _DATE.fullmatch(raw) else None
    except ValueError:
        date = None
    stored = edition_store.get_edition(request.app.state.engine, date) if date else None
    if stored is None or stored.status.value not in PUBLISHED:
        return request.app.state.pages.render(
            request,
            "error.html",
            status_code=404,
            title="No such edition",
            message="There is no published edition for that date. The archive lists every "
            "edition that went out.",
        )
    slots = neutral_slots(settings, view_online_url=view_online_url(settings, stored.rendered.date))
    html, _ = personalize(stored.rendered, slots)
    bar = request.app.state.pages.env.get_template("archive_bar.html").render(
        settings=settings, date=long_date(stored.rendered.date)
    )
    found = _BODY_OPEN.search(html)
    html = html[: found.end()] + bar + html[found.end() :] if found else bar + html
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": EDITION_CSP,
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )


def archive_feed(request: Request) -> Response:
    """The newest editions as Atom: the subject, the preheader, and the text of each."""
    settings: Settings = request.app.state.settings
    entries = []
    for item in list_published(request.app.state.engine, limit=FEED_ENTRIES, with_text=True):
        url = view_online_url(settings, item.rendered.date)
        _, text = personalize(item.rendered, neutral_slots(settings, view_online_url=url))
        entries.append(
            atom.Entry(
                url=url,
                title=item.rendered.subject,
                updated=item.published_at,
                summary=item.rendered.preheader,
                content=text,
            )
        )
    feed = atom.Feed(
        title=settings.name,
        self_url=f"{settings.base_url}/archive/feed.xml",
        site_url=f"{settings.base_url}/archive",
        author=settings.from_name,
        language=settings.language,
        subtitle=f"Every edition of {settings.name}",
    )
    return Response(
        atom.atom_feed(feed, entries),
        media_type=atom.CONTENT_TYPE,
        headers={"Cache-Control": "public, max-age=300"},
    )


ROUTES: list[BaseRoute] = [
    Route("/archive", archive_index, methods=["GET"]),
    Route("/archive/feed.xml", archive_feed, methods=["GET"]),
    Route("/archive/{date}", archive_edition, methods=["GET"]),
]
