"""The editor password check, CSRF tokens for every form, and the editor-only guard.

The password is compared as a salted hash in constant time (EDITOR_PASSWORD
may be given as a `pbkdf2_sha256$…` hash or, for a quick start, in clear). The
session is server-side (`sessions.py`); each gets a random CSRF token. Forms
shown before any login carry a token bound to the form cookie instead. Every
POST form carries one and `check_csrf` refuses a request without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.tokens import Purpose
from newsletter.web.sessions import form_value, state_of

ITERATIONS = 200_000


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`pbkdf2_sha256$iterations$salt$hash`, the form EDITOR_PASSWORD may be stored in."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    encode = base64.urlsafe_b64encode
    return f"pbkdf2_sha256${ITERATIONS}${encode(salt).decode()}${encode(digest).decode()}"


def check_password(given: str, configured: str) -> bool:
    if not configured:
        return False
    if configured.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, expected = configured.split("$")
            digest = hashlib.pbkdf2_hmac(
                "sha256", given.encode(), base64.urlsafe_b64decode(salt), int(iterations)
            )
        except ValueError:
            return False
        return hmac.compare_digest(base64.urlsafe_b64encode(digest).decode(), expected)
    # A clear-text setting: compare hashes of both, so timing says nothing of the password.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(configured.encode()).digest()
    )


def csrf_token(request: Request) -> str:
    """The CSRF token for a form on this page.

    Logged in: the session row's own token. Before any login (the login and
    sign-up forms): the HMAC under `Purpose.FORM` of the form cookie's random
    value, so no server-side state is needed, and the cookie is set only by a
    page that calls this (a page without a form sets no cookie).
    """
    state = state_of(request)
    if state.row is not None:
        return state.row.csrf
    return request.app.state.signer.mac(Purpose.FORM, form_value(request))


async def check_csrf(request: Request) -> bool:
    """True when the form's `csrf_token` is this browser's: its session's, or its form cookie's."""
    form = await request.form()
    given = str(form.get("csrf_token", ""))
    state = state_of(request)
    if state.row is not None:
        expected = state.row.csrf
    elif state.form_value and not state.form_is_new:
        expected = request.app.state.signer.mac(Purpose.FORM, state.form_value)
    else:
        return False
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def is_editor(request: Request) -> bool:
    return state_of(request).logged_in


Handler = Callable[[Request], Awaitable[Response]]


def editor_only(handler: Handler) -> Handler:
    """Send anyone not logged in to the login page; refuse a POST without a valid CSRF token."""

    async def wrapped(request: Request) -> Response:
        if not is_editor(request):
            return RedirectResponse(f"/editor/login?next={request.url.path}", status_code=303)
        if request.method == "POST" and not await check_csrf(request):
            pages = request.app.state.pages
            return pages.render(
                request,
                "error.html",
                status_code=403,
                title="Form expired",
                message="This form is no longer valid (its security token is missing or old). "
                "Go back, reload the page and try again.",
            )
        return await handler(request)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
