"""The web side: one Starlette app over the same store the sender uses.

    public.py    what subscribers reach from an email or a form: one-click
                 unsubscribe (RFC 8058), double opt-in sign-up; it also mounts
    archive.py   the archive of sent editions and its Atom feed, and
    ops.py       /healthz and /metrics for operators
    webhooks.py  POST /webhooks/<provider>: SES, Mailgun, Postmark, SendGrid bounces
    editor.py    the editors' pages behind a login (editor_*.py): dates, preview,
                 test send, edition controls, subscribers
    security.py  the editor password check, CSRF tokens, the editor-only guard
    sessions.py  server-side editor sessions and every cookie the site sets
    login_throttle.py  attempts counted per client, per device and overall
    pages.py     rendering the HTML pages (Jinja2, autoescaped) from templates/web/
    proxy.py     the client's address and scheme (TRUSTED_PROXIES), one rule for all
    headers.py   the security headers every response gets unless its route set its own
    server.py    `newsletter serve`'s uvicorn: header and body deadlines, a connection cap

`create_app(settings)` wires them; `newsletter serve` runs it under uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from newsletter.bounces.sns_certificates import SnsFetcher, default_fetcher
from newsletter.config import Settings, require_secret_key
from newsletter.store.engine import open_engine
from newsletter.tokens import signer_for
from newsletter.web import editor, public, webhooks
from newsletter.web.headers import SecurityHeaders
from newsletter.web.pages import Pages
from newsletter.web.proxy import ProxyHeaders
from newsletter.web.sessions import SessionCookies


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await editor.stop_sends(app)  # a "send now" in progress records what went out, then stops


def create_app(settings: Settings, *, sns: SnsFetcher | None = None) -> Starlette:
    """The site. `sns`: how SNS certificates are fetched (default: the system's trust
    store and SNS's hosts; tests give one for their local HTTPS server)."""
    require_secret_key(settings)  # the root of the session, form and link keys: never a weak one
    app = Starlette(
        routes=[*public.ROUTES, *editor.ROUTES, *webhooks.ROUTES],
        lifespan=_lifespan,
        middleware=[
            # Outermost: CSP, nosniff and a referrer policy on every answer, 500s included.
            Middleware(SecurityHeaders),
            # Then every later layer sees the client and scheme by the one rule.
            Middleware(ProxyHeaders, trusted=settings.trusted_networks),
            # Editor sessions from the database (`request.session`) and every cookie set.
            Middleware(SessionCookies, settings=settings),
        ],
    )
    app.state.settings = settings
    app.state.engine = open_engine(settings.database_url)
    app.state.signer = signer_for(settings)
    app.state.pages = Pages(settings)
    app.state.sns = sns or (default_fetcher() if settings.ses_topics else None)
    app.state.webhook_refusals = webhooks.Refusals()
    return app
