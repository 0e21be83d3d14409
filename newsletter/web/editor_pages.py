"""The editor's read-only pages: the dashboard of dates and one date's preview.

A preview is the exact bytes a subscriber gets (see `editor_data`). The page
shows the subject, preheader, size and warnings, and frames the HTML part from
`/editor/edition/DATE/html`, a document of its own under `PREVIEW_CSP` inside a
sandboxed iframe: article HTML can run no script and reach nothing of the
editor's. Phone, desktop and text views are plain links (`?view=`), no script.

A broken template is not a crash: the page (status 200, since the page itself
works) shows the template error with its file and line, and the edition
controls stay usable.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import NewsletterError, RenderError
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import editor as editor_store
from newsletter.store import subscribers as subscriber_store
from newsletter.web.editor_common import PREVIEW_CSP, message_page, page, path_day, secure
from newsletter.web.editor_data import list_days, load_preview
from newsletter.web.editor_sends import sends_of
from newsletter.web.security import editor_only

#: The preview widths: an iPhone's 375 CSS pixels and a desktop client's reading pane.
VIEWS = {"phone": 375, "desktop": 800, "text": 0}
DEFAULT_VIEW = "desktop"
TEST_ADDRESS = "editor_test_to"  # the session key remembering the last test address


@editor_only
async def dashboard(request: Request) -> Response:
    """Every recent date: articles in the source, the edition's status, deliveries so far."""
    state = request.app.state
    rows, problem = await run_in_threadpool(list_days, state.engine, state.settings)
    subscribers = subscriber_store.count_by_status(state.engine)
    sends = sends_of(request)
    today = state.settings.today()
    return page(
        request,
        "dashboard.html",
        rows=rows,
        problem=problem,
        active=subscribers[SubscriberStatus.ACTIVE],
        running={date for date in sends.runs if sends.running(date)},
        today=today,
    )


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
    error: NewsletterError | None = None
    try:
        preview = await run_in_threadpool(load_preview, state.engine, state.settings, day)
    except NewsletterError as exc:  # RenderError (file:line) or SourceError
        preview, error = None, exc
    stored = preview.stored if preview else edition_store.get_edition(state.engine, day)
    if preview is None and error is None and stored is None:
        return message_page(
            request,
            f"Nothing for {day.isoformat()}",
            "The source has no articles for this date and no edition was stored for it.",
            404,
        )
    counts = delivery_store.count_by_status(state.engine, stored.id) if stored else None
    run = sends_of(request).runs.get(day)
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
        counts=counts,
        delivery_statuses=list(DeliveryStatus),
        run=run,
        tests=editor_store.recent_test_sends(state.engine, stored.id) if stored else [],
        active=subscriber_store.count_by_status(state.engine)[SubscriberStatus.ACTIVE],
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
        preview = await run_in_threadpool(load_preview, state.engine, state.settings, day)
    except NewsletterError as exc:
        body = f"The edition cannot be rendered: {exc}"
        return secure(Response(body, 500, media_type="text/plain; charset=utf-8"))
    if preview is None:
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
        preview = await run_in_threadpool(load_preview, state.engine, state.settings, day)
    except NewsletterError as exc:
        return message_page(request, "Cannot render the edition", str(exc), 500)
    if preview is None:
        return message_page(request, "No edition", f"Nothing to show for {day}.", 404)
    response = Response(preview.message, media_type="message/rfc822")
    response.headers["Content-Disposition"] = f'attachment; filename="edition-{day}.eml"'
    return secure(response)
