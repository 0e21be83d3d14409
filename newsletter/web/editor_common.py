"""What every editor page shares: rendering with security headers, one-shot messages
across a redirect, the date in the URL, and the log line of an editor action.

Editor pages carry no JavaScript at all, so their Content-Security-Policy forbids
scripts outright; they may only be framed by nothing (no clickjacking of the
"send now" button). The edition preview is the one document that holds foreign
HTML (article text), and it gets a stricter policy of its own (`PREVIEW_CSP`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from newsletter.logs import event
from newsletter.web.proxy import client_address

log = logging.getLogger("newsletter.editor")

EDITOR_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: The email HTML as a document of its own: no script, no plugin, no form, no
#: navigation of the editor's page, and a unique (sandboxed) origin even when the
#: URL is opened directly, so article HTML can never act as the logged-in editor.
#: Images load as in a mail client that shows them.
PREVIEW_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)

_FLASHES = "flashes"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def secure(response: Response, csp: str = EDITOR_CSP) -> Response:
    """Headers every editor response gets: its CSP, no sniffing, no caching, no referrer."""
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """An editor page from templates/web/editor/, with the messages waiting for it."""
    response = request.app.state.pages.render(
        request, f"editor/{name}", status_code=status_code, flashes=pop_flashes(request), **context
    )
    secure(response)
    return response


def message_page(request: Request, title: str, text: str, status_code: int) -> HTMLResponse:
    """A short page for a refusal or a missing thing, with the way back to the dashboard."""
    return page(request, "message.html", status_code=status_code, title=title, text=text)


def flash(request: Request, kind: str, text: str) -> None:
    """Keep a message (kind `ok`, `error` or `info`) for the next page shown to this editor.

    Actions answer with a redirect (so reloading a page never repeats one) and
    say what happened on the page they redirect to.
    """
    request.session[_FLASHES] = [*request.session.get(_FLASHES, []), [kind, text]][-5:]


def pop_flashes(request: Request) -> list[tuple[str, str]]:
    if "session" not in request.scope:
        return []
    return [(kind, text) for kind, text in request.session.pop(_FLASHES, [])]


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows a POST's answer with a GET."""
    return RedirectResponse(url, status_code=303)


def path_day(request: Request) -> dt.date | None:
    """The YYYY-MM-DD in the URL, or None when it is not a real date (the caller answers 404)."""
    value = request.path_params.get("day", "")
    if not _DAY.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def edition_url(day: dt.date, view: str | None = None) -> str:
    url = f"/editor/edition/{day.isoformat()}"
    return f"{url}?view={view}" if view else url


def log_action(request: Request, action: str, outcome: str, **fields: Any) -> None:
    """One log line per editor action, so operators can see who changed what and when."""
    client = client_address(request)
    event(log, "editor_action", action=action, outcome=outcome, client=client, **fields)


async def confirmed(request: Request) -> bool:
    """True when the form carries `confirm=yes` (set only by the confirmation page's form)."""
    form = await request.form()
    return form.get("confirm") == "yes"


def confirm_page(
    request: Request,
    *,
    title: str,
    lines: list[str],
    action: str,
    button: str,
    cancel: str,
    fields: dict[str, str] | None = None,
    danger: bool = False,
) -> HTMLResponse:
    """The question asked before an action that changes what subscribers get.

    Its form posts to the same URL with `confirm=yes`; without JavaScript the
    question is still asked, since the first POST only ever gets this page.
    """
    return page(
        request,
        "confirm.html",
        title=title,
        lines=lines,
        action=action,
        button=button,
        cancel=cancel,
        fields=fields or {},
        danger=danger,
    )
