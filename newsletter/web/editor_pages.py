"""The editor's read-only pages: the dashboard of dates and one date's preview.

A preview is the exact bytes a subscriber gets (`newsletter.app.preview`). The page
shows the subject, preheader, size and warnings, and frames the HTML part from
`/editor/edition/DATE/html`, a document of its own under `PREVIEW_CSP` inside a
sandboxed iframe: article HTML can run no script and reach nothing of the
editor's. Phone, desktop and text views are plain links (`?view=`), no script.

A broken template is not a crash: the page (status 200, since the page itself
works) shows the template error with its file and line, and the edition
controls stay usable.

Every store read, source read and render runs in the threadpool, with the
application layer's function as the unit: the server's event loop, which also
answers every other page, never waits on them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter import app as core
from newsletter.config import Settings
from newsletter.errors import NewsletterError, RenderError
from newsletter.models import DeliveryStatus
from newsletter.web.editor_common import PREVIEW_CSP, message_page, page, path_day, secure
from newsletter.web.editor_sends import sends_of
from newsletter.web.security import editor_only

#: The preview widths: an iPhone's 375 CSS pixels and a desktop client's reading pane.
VIEWS = {"phone": 375, "desktop": 800, "text": 0}
DEFAULT_VIEW = "desktop"
TEST_ADDRESS = "editor_test_to"  # the session key remembering the last test address


@editor_only
async def dashboard(request: Request) -> Response:
    """Every recent date: the edition's status, its articles, deliveries so far."""
    state = request.app.state
    board = await run_in_threadpool(core.dashboard, state.engine, state.settings)
    sends = sends_of(request)
    return page(
        request,
        "dashboard.html",
        rows=board.rows,
        problem=board.problem,
        active=board.active,
        running={date for date in sends.runs if sends.running(date)},
        today=state.settings.today(),
    )


def _edition_view(
    engine: Engine, settings: Settings, day: dt.date
) -> tuple[core.EditionState, core.Preview | None, NewsletterError | None]:
    """Everything the edition page shows, gathered in the thread the handler runs it in."""
    current = core.edition_state(engine, day)
    try:
        shown = core.preview(engine, settings, day, stored=current.stored)
    except NewsletterError as exc:  # RenderError (file:line) or SourceError
        return current, None, exc
    return current, (shown if isinstance(shown, core.Preview) else None), None


@editor_only
async def edition(request: Request) -> Response:
    """One date's edition as subscribers get it, with its warnings and controls."""
    day = path_day(request)
    if day is None:
        return message_page(request, "No such date", "Dates look like 2026-11-25.", 404)
    view = request.query_params.get("view", DEFAULT_VIEW)
    if view not in VIEWS:
        view = DEFAULT_VIEW
    state = request.app.state
    current, preview, error = await run_in_threadpool(
        _edition_view, state.engine, state.settings, day
    )
    stored = current.stored
    if preview is None and error is None and stored is None:
        return message_page(
            request,
            f"Nothing for {day.isoformat()}",
            "The source has no articles for this date and no edition was stored for it.",
            404,
        )
    return page(
        request,
        "edition.html",
        day=day,
        view=view,
        width=VIEWS[view],
        views=VIEWS,
        preview=preview,
        error=error,
        template_error=isinstance(error, RenderError),
        stored=stored,
        status=stored.status.value if stored else "none",
        counts=current.counts,
        delivery_statuses=list(DeliveryStatus),
        run=sends_of(request).runs.get(day),
        tests=current.tests,
        active=current.active,
        test_to=request.session.get(TEST_ADDRESS, ""),
    )


@editor_only
async def edition_html(request: Request) -> Response:
    """The HTML part alone, as the sample recipient's client decodes it: the preview frame."""
    day = path_day(request)
    if day is None:
        return secure(Response("no such date", 404, media_type="text/plain"))
    state = request.app.state
    try:
        preview = await run_in_threadpool(core.preview, state.engine, state.settings, day)
    except NewsletterError as exc:
        body = f"The edition cannot be rendered: {exc}"
        return secure(Response(body, 500, media_type="text/plain; charset=utf-8"))
    if isinstance(preview, core.NoArticles):
        return secure(Response(f"no edition for {day}", 404, media_type="text/plain"))
    response = Response(preview.html, media_type="text/html; charset=utf-8")
    return secure(response, PREVIEW_CSP)


@editor_only
async def edition_eml(request: Request) -> Response:
    """The sample recipient's whole message, to open in a real mail client."""
    day = path_day(request)
    if day is None:
        return message_page(request, "No such date", "Dates look like 2026-11-25.", 404)
    state = request.app.state
    try:
        preview = await run_in_threadpool(core.preview, state.engine, state.settings, day)
    except NewsletterError as exc:
        return message_page(request, "Cannot render the edition", str(exc), 500)
    if isinstance(preview, core.NoArticles):
        return message_page(request, "No edition", f"Nothing to show for {day}.", 404)
    response = Response(preview.message, media_type="message/rfc822")
    response.headers["Content-Disposition"] = f'attachment; filename="edition-{day}.eml"'
    return secure(response)
