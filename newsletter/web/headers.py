"""Security headers on every response: a default CSP that no other site may frame, no
MIME sniffing, a referrer policy; each set only where the route set none of its own.

One middleware, so no page can forget them: the archive, its feed, the sign-up,
confirm and unsubscribe pages, error and 404 pages, /healthz and /metrics all get
`PUBLIC_CSP` (no script at all; inline styles; images from the site; forms post
to the site; `frame-ancestors 'none'`, so no other origin can frame a button
and trick a click on it). A route with needs of its own sets its own header and
keeps it: the editor's pages (`editor_common.secure`), the edition preview that
the editor frames (`frame-ancestors 'self'`), and the archive's edition pages,
which show the email HTML with remote images (`archive.EDITION_CSP`).

A response the app never produced because a route raised is answered here too
(500, with the headers), before Starlette's outer error handler would answer it
bare; the exception still goes on to be logged.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The origin, never the path, leaves the site (pages with a token say no-referrer).
REFERRER_POLICY = "strict-origin-when-cross-origin"
DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", PUBLIC_CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", REFERRER_POLICY),
)


class SecurityHeaders:
    """ASGI middleware: add each of `DEFAULTS` that a response does not carry already."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_defaults(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = list(message.get("headers", ()))
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULTS:
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_defaults)
        except Exception:
            if not started:
                await _server_error(send_with_defaults)
            raise


async def _server_error(send: Send) -> None:
    """The plain 500 Starlette would send, but through the defaults."""
    body = b"Internal Server Error"
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
