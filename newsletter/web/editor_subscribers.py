"""The subscriber list for editors: counts, search, unsubscribe or erase one, CSV export.

Changes go through `newsletter.subscribers`, the same functions the CLI uses,
so the web keeps the list's rules: unsubscribing keeps the row (no import can
add the address back), erasing removes it and its delivery records. Every store
call runs in the threadpool, never on the server's event loop.
"""

from __future__ import annotations

import datetime as dt
import io
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import InputError
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as subscriber_store
from newsletter.subscribers import export_csv, remove_subscriber, unsubscribe
from newsletter.web.editor_common import (
    confirm_page,
    confirmed,
    flash,
    log_action,
    message_page,
    page,
    redirect,
    secure,
)
from newsletter.web.security import editor_only

SEARCH_LIMIT = 50


@editor_only
async def subscribers(request: Request) -> Response:
    """Counts by status, and the addresses matching `q` (the first ones when `q` is empty)."""
    engine = request.app.state.engine
    query = request.query_params.get("q", "").strip()[:320]
    found = await run_in_threadpool(
        subscriber_store.search_subscribers, engine, query, limit=SEARCH_LIMIT
    )
    counts = await run_in_threadpool(subscriber_store.count_by_status, engine)
    return page(
        request,
        "subscribers.html",
        counts=counts,
        query=query,
        found=found,
        limit=SEARCH_LIMIT,
    )


@editor_only
async def unsubscribe_one(request: Request) -> Response:
    """Mark one address unsubscribed (kept, so no import re-adds it), after a confirmation."""
    email = str((await request.form()).get("email", "")).strip()
    if not await confirmed(request):
        return confirm_page(
            request,
            title=f"Unsubscribe {email}?",
            lines=[
                "They get no more editions. The address stays on file as unsubscribed, "
                "so importing a list can never add it back.",
            ],
            action="/editor/subscribers/unsubscribe",
            button="Unsubscribe",
            cancel=_back(email),
            fields={"email": email},
        )
    if not await _known(request, email):
        flash(request, "error", f"{email or 'That address'} is not on the list.")
        log_action(request, "unsubscribe", "refused: unknown address", email=email)
        return redirect(_back(email))
    changed = await run_in_threadpool(unsubscribe, request.app.state.engine, email)
    text = f"{email} is unsubscribed." if changed else f"{email} was already unsubscribed."
    flash(request, "ok", text)
    log_action(request, "unsubscribe", "ok" if changed else "unchanged", email=email)
    return redirect(_back(email))


@editor_only
async def delete_one(request: Request) -> Response:
    """Erase one address and its delivery records (an erasure request), after a confirmation."""
    email = str((await request.form()).get("email", "")).strip()
    if not await confirmed(request):
        return confirm_page(
            request,
            title=f"Erase {email}?",
            lines=[
                "This deletes the address and its delivery records for good (use it for an "
                "erasure request). A later import could add it again; to stop emails, "
                "unsubscribe it instead.",
            ],
            action="/editor/subscribers/delete",
            button="Erase for good",
            cancel=_back(email),
            fields={"email": email},
            danger=True,
        )
    try:
        await run_in_threadpool(remove_subscriber, request.app.state.engine, email, delete=True)
    except InputError as exc:
        flash(request, "error", str(exc))
        log_action(request, "erase", "refused: unknown address", email=email)
        return redirect(_back(email))
    flash(request, "ok", f"{email} and its delivery records are erased.")
    log_action(request, "erase", "ok", email=email)
    return redirect("/editor/subscribers")


@editor_only
async def export(request: Request) -> Response:
    """The list (or one status of it) as a CSV download, the same file `export` writes."""
    wanted = request.query_params.get("status", "")
    status: SubscriberStatus | None = None
    if wanted:
        try:
            status = SubscriberStatus(wanted)
        except ValueError:
            allowed = ", ".join(s.value for s in SubscriberStatus)
            return message_page(request, "No such status", f"Use one of: {allowed}.", 400)
    buffer = io.StringIO(newline="")
    rows = await run_in_threadpool(export_csv, request.app.state.engine, buffer, status=status)
    name = f"subscribers-{status.value + '-' if status else ''}{dt.date.today().isoformat()}.csv"
    response = Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    log_action(request, "export", "ok", rows=rows, status=wanted or "all")
    return secure(response)


async def _known(request: Request, email: str) -> bool:
    if not email:
        return False
    engine = request.app.state.engine
    return await run_in_threadpool(subscriber_store.get_subscriber, engine, email) is not None


def _back(email: str) -> str:
    return "/editor/subscribers?" + urlencode({"q": email}) if email else "/editor/subscribers"
